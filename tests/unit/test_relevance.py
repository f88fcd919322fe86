"""``Hit.relevance`` and ``min_score="auto"``: the calibrated "does this passage answer the question",
from the pure functions up through the retriever and the prompt builder (fake embedder)."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit import ConfigError, Document, Hit, PromptBuilder
from ragkit.retrieval import relevance as rel
from ragkit.storage.bm25 import BM25Index, bm25_ideal_score, bm25_unseen_weight, unseen_idf

CORPUS = [
    Document("oxalic", "Treat varroa mites with oxalic acid dribble in winter.", {}),
    Document("count", "Count varroa mites with a sugar roll of three hundred bees.", {}),
    Document("queen", "A mated queen lays up to two thousand eggs a day in spring.", {}),
]


def test_each_legs_evidence_is_a_logistic_centred_on_its_constant() -> None:
    assert rel.dense_evidence(np.array([rel.DENSE_CENTER]))[0] == pytest.approx(0.5)
    assert rel.lexical_evidence(np.array([rel.LEXICAL_CENTER]))[0] == pytest.approx(0.5)
    cos = rel.dense_evidence(np.array([0.1, 0.3, 0.6, 0.9]))
    assert np.all(np.diff(cos) > 0) and cos[0] < 0.01 and cos[-1] > 0.99


def test_relevance_is_noisy_or_of_the_legs_searched() -> None:
    share, cosine = np.array([0.0, 2.0]), np.array([0.6, 0.1])
    both = rel.relevance(share, cosine)
    assert both[0] == pytest.approx(rel.dense_evidence(cosine)[0], abs=1e-3)  # no lexical evidence
    assert both[1] == pytest.approx(rel.lexical_evidence(share)[1], abs=1e-3)  # no dense evidence
    assert np.all((0 <= both) & (both <= 1))
    assert np.allclose(rel.relevance(None, cosine), rel.dense_evidence(cosine))
    assert rel.relevance(None, None).size == 0


def test_query_words_the_collection_lacks_count_against_the_ideal_score() -> None:
    index = BM25Index.build([["bee", "hive"], ["honey"], ["bee", "wax"]])
    query = ["bee", "violin", "viola"]
    assert bm25_ideal_score(index, query) == bm25_ideal_score(index, ["bee"])  # ranking: held words only
    assert bm25_unseen_weight(index, query) == pytest.approx(2 * unseen_idf(3, index.params))
    assert unseen_idf(3, index.params) > index.term_idf(np.array([index.vocab["honey"]]))[0]  # rarer than rarest
    assert bm25_unseen_weight(index, ["bee"]) == 0.0


def test_every_searched_hit_carries_a_relevance_in_0_1(fake_index) -> None:  # type: ignore[no-untyped-def]
    fake_index.add(CORPUS)
    for mode in ("hybrid", "dense"):
        hits = fake_index.search("varroa mites oxalic", k=3, mode=mode)
        assert hits and all(h.relevance is not None and 0 <= h.relevance <= 1 for h in hits)
    assert all(h.relevance is None for h in fake_index.search("varroa", k=3, mode="bm25"))  # no calibration


def test_min_score_auto_keeps_exactly_the_hits_at_least_half_relevant(fake_index) -> None:  # type: ignore[no-untyped-def]
    fake_index.add(CORPUS)
    everything = fake_index.search("varroa mites oxalic", k=3)
    kept = fake_index.search("varroa mites oxalic", k=3, min_score="auto")
    assert [h.chunk_id for h in kept] == [h.chunk_id for h in everything if h.relevance >= rel.AUTO_THRESHOLD]
    assert fake_index.search("capital of Peru", k=3, min_score="auto") == []
    with pytest.raises(ConfigError, match="min_score"):
        fake_index.search("varroa", k=3, min_score="high")  # type: ignore[arg-type]


def hit(i: int, relevance: float | None, score: float = 1.0) -> Hit:
    return Hit(f"c{i}", f"d{i}", f"Passage {i}.", score, rank=i, relevance=relevance)


def test_prompt_builder_drops_irrelevant_passages_by_default_with_a_reason() -> None:
    prompt = PromptBuilder("qa").build("Why?", [hit(1, 0.9), hit(2, 0.1), hit(3, None)])
    assert [h.chunk_id for h in prompt.passages] == ["c1", "c3"]  # no relevance: no evidence against it
    assert prompt.dropped[0].key == "c2" and "relevance 0.10 below min_score 'auto'" in prompt.dropped[0].reason
    refused = PromptBuilder("qa").build("Capital of Peru?", [hit(1, 0.2), hit(2, 0.05)])
    assert refused.context_sufficient is False and refused.passages == []
    assert "No relevant context" in refused.text


def test_prompt_builder_min_score_number_or_none_replaces_auto() -> None:
    hits = [hit(1, 0.1, score=0.9), hit(2, 0.9, score=0.2)]
    assert [h.chunk_id for h in PromptBuilder("qa", min_score=0.5).build("Why?", hits).passages] == ["c1"]
    assert len(PromptBuilder("qa", min_score=None).build("Why?", hits).passages) == 2
    with pytest.raises(ConfigError, match="min_score"):
        PromptBuilder("qa", min_score=float("nan"))
