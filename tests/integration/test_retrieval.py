"""HybridRetriever options on the real sample index: MMR, grouping, reranking, settings, evidence.

Every test runs on both backends (the local index and Milvus Lite): retrieval is backend-agnostic.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import BACKENDS, have_milvus, open_index

from ragkit.errors import ConfigError, ModelNotAvailableError

QUERY = "how do I monitor and treat varroa mites"


@pytest.fixture(scope="module", params=BACKENDS)
def index(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "milvus-lite" and not have_milvus():
        pytest.skip('Milvus Lite tests need pymilvus and milvus-lite: pip install "ragkit[milvus]"')
    build = request.getfixturevalue("samples_build" if request.param == "local" else "milvus_samples_build")
    with open_index(build.location) as idx:
        yield idx


def _per_doc(hits) -> int:  # type: ignore[no-untyped-def]
    return max(sum(h.doc_id == d for h in hits) for d in {h.doc_id for h in hits})


def test_hybrid_hits_explain_themselves_and_are_sorted(index) -> None:  # type: ignore[no-untyped-def]
    hits = index.search(QUERY, k=8)
    assert [h.rank for h in hits] == list(range(1, 9))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    for h in hits:
        # both legs ran: a leg that did not return the hit shows its exact score, with rank None
        assert h.bm25_score is not None and h.dense_score is not None
        assert h.bm25_rank is not None or h.dense_rank is not None


def test_mmr_spreads_the_top_over_more_documents(index) -> None:  # type: ignore[no-untyped-def]
    plain = index.search(QUERY, k=8)
    diverse = index.search(QUERY, k=8, mmr=True, mmr_lambda=0.3)
    assert len(diverse) == 8
    assert len({h.doc_id for h in diverse}) >= len({h.doc_id for h in plain})
    vectors = index.embedder.encode([h.text for h in plain] + [h.text for h in diverse])
    sim = lambda v: float(np.mean([v[i] @ v[j] for i in range(len(v)) for j in range(i + 1, len(v))]))  # noqa: E731
    assert sim(vectors[8:]) < sim(vectors[:8])  # MMR's passages are less alike
    assert diverse[0].chunk_id == plain[0].chunk_id  # the best passage stays first


def test_group_by_document_keeps_the_best_chunk_of_each(index) -> None:  # type: ignore[no-untyped-def]
    plain = index.search(QUERY, k=20)
    assert _per_doc(plain) > 1  # the query really does hit several chunks of one document
    grouped = index.search(QUERY, k=5, group_by="document")
    assert len({h.doc_id for h in grouped}) == len(grouped) == 5
    best = {}
    for h in plain:
        best.setdefault(h.doc_id, h.chunk_id)
    assert grouped[0].chunk_id == best[grouped[0].doc_id]


def test_group_by_neighbors_merges_touching_chunks_into_one_passage(index) -> None:  # type: ignore[no-untyped-def]
    merged = index.search(QUERY, k=10, group_by="neighbors")
    by_doc: dict[str, list] = {}
    for h in merged:
        by_doc.setdefault(h.doc_id, []).append(h)
    for hits in by_doc.values():  # no two passages of one document touch or overlap any more
        spans = sorted((h.start, h.end) for h in hits)
        assert all(a_end + 1 < b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    docs = {d.id: d.text for d in index.documents()}
    widened = [h for h in merged if len(h.text) > 0 and h.end - h.start > 0]
    for h in widened:  # every passage's words come from its document's span
        span = docs[h.doc_id][h.start:h.end]
        assert set(h.text.split()) <= set(span.split())


def test_a_reranker_that_cannot_load_offline_is_a_clear_error_not_a_hang(index) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="cross-encoder"):
        index.search(QUERY, k=3, reranker="no-such-org/no-such-cross-encoder")
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("settings, word", [
    ({"method": "bogus"}, "adaptive"), ({"weight": 1.5}, "weight"), ({"normalization": "l2"}, "minmax"),
    ({"group_by": "page"}, "document"), ({"depth": 0}, "depth"), ({"mmr_lambda": 2}, "mmr_lambda"),
])
def test_bad_settings_name_the_option_and_valid_values(index, settings, word) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=word):
        index.search(QUERY, **settings)


def test_each_mode_and_method_returns_k_hits(index) -> None:  # type: ignore[no-untyped-def]
    for mode in ("bm25", "dense", "hybrid"):
        assert len(index.search(QUERY, k=7, mode=mode)) == 7
    for method in ("adaptive", "rrf", "convex", "dbsf"):
        hits = index.search(QUERY, k=7, method=method)
        assert len(hits) == 7 and len({h.chunk_id for h in hits}) == 7  # no chunk twice
    with pytest.raises(ConfigError, match="mode"):
        index.search(QUERY, mode="sparse")


def test_empty_and_punctuation_queries(index) -> None:  # type: ignore[no-untyped-def]
    assert index.search("   ", k=3) == []
    assert isinstance(index.search("?!...", k=3), list)


def test_associations_lift_a_labelled_document_for_a_similar_question_and_explain_it(index) -> None:  # type: ignore[no-untyped-def]
    from ragkit.retrieval.association import QueryAssociations

    question = "what should a beekeeper check before winter"
    plain = index.search(question, k=30)
    target = next(h.doc_id for h in plain[8:] if h.doc_id not in {p.doc_id for p in plain[:8]})
    labels = QueryAssociations.from_labels([question], index.embed_query(question)[None, :], [[target]])
    lifted = index.search(question, k=30, associations=labels)
    assert lifted[0].doc_id == target
    assert lifted[0].associated_question == question and 0.9 < lifted[0].association_score <= 1.0
    assert all(h.association_score is None for h in lifted if h.doc_id != target)
    # A question that is not like the labelled one ranks exactly as without associations.
    other = "how do I render old comb into wax"
    assert [(h.chunk_id, h.score) for h in index.search(other, k=10, associations=labels)] == [
        (h.chunk_id, h.score) for h in index.search(other, k=10)]
    # Associations reorder candidates; they never bring back what a filter excludes, nor touch one leg alone.
    source = next(h.source for h in plain if h.doc_id == target)
    filtered = index.search(question, k=30, associations=labels, filters={"source": {"ne": source}})
    assert target not in {h.doc_id for h in filtered}
    assert [h.chunk_id for h in index.search(question, k=10, mode="bm25", associations=labels)] == [
        h.chunk_id for h in index.search(question, k=10, mode="bm25")]
    with pytest.raises(ConfigError, match="association_threshold"):
        index.search(question, associations=labels, association_threshold=1.0)
