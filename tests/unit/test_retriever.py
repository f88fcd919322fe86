"""The hybrid retriever on the fake embedder, through ``Index.search(**settings)``: settings validation,
fusion weights at their extremes, grouping, MMR, and saved settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import FakeEmbedder, open_fake_index
from ragkit import ConfigError, Document, Hit

CORPUS = [
    Document("oxalic-1", "Treat varroa mites with oxalic acid dribble in winter.", {"topic": "varroa"}),
    Document("oxalic-2", "Treat varroa mites with oxalic acid dribble in winter!", {"topic": "varroa"}),
    Document("oxalic-3", "Treat varroa mites with oxalic acid dribble, in winter.", {"topic": "varroa"}),
    Document("count", "Count varroa mites with a sugar roll of three hundred bees.", {"topic": "varroa"}),
    Document("queen", "A mated queen lays up to two thousand eggs a day in spring.", {"topic": "queens"}),
    Document("smoke", "Cool white smoke from dry pine needles calms the guard bees.", {"topic": "handling"}),
    Document("honey", "Extract honey when most of the frame is capped with wax.", {"topic": "harvest"}),
]

# One long paragraph whose sentences each make one chunk at chunk_size=12 (the fake counts words);
# neighbouring chunks are one space apart, so they touch.
SECTIONS = [f"Section {i} explains {word} in plain words for beginners." for i, word in
            enumerate(["swarming", "swarming", "feeding", "wintering", "swarming", "requeening"])]
LONG = " ".join(SECTIONS)
SHORT = [d for d in CORPUS[3:] if len(d.text.split()) <= 12]  # one chunk each at chunk_size=12


@pytest.fixture
def index(fake_index):  # type: ignore[no-untyped-def]
    fake_index.add(CORPUS)
    return fake_index


@pytest.fixture
def long_index(tmp_path: Path):  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "long.ragkit", FakeEmbedder(), chunk_size=12, chunk_overlap=0) as index:
        index.add([Document("guide", LONG), *SHORT])
        assert len(index) == len(SECTIONS) + len(SHORT), "each section should be one chunk"
        yield index


def doc_ids(hits: list[Hit]) -> list[str]:
    return [h.doc_id for h in hits]


# -- validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, complaint", [
    ({"method": "borda"}, "method"),
    ({"weight": 1.5}, "weight"),
    ({"weight": -0.1}, "weight"),
    ({"normalization": "softmax"}, "normalization"),
    ({"group_by": "title"}, "group_by"),
    ({"depth": 0}, "depth"),
    ({"mmr_lambda": 2.0}, "mmr_lambda"),
    ({"association_weight": float("nan")}, "association_weight"),
    ({"association_weight": -1.0}, "association_weight"),
    ({"association_threshold": 1.0}, "association_threshold"),
])
def test_bad_settings_are_config_errors_naming_the_setting(index, settings: dict, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        index.search("varroa", k=3, **settings)
    with pytest.raises(ConfigError, match=complaint):
        index.retriever(**settings)


def test_an_unknown_setting_is_refused(index) -> None:
    with pytest.raises((ConfigError, TypeError)):
        index.search("varroa", k=3, wieght=0.5)


# -- fusion -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["adaptive", "rrf", "convex", "dbsf"])
def test_every_method_ranks_the_union_of_both_legs(index, method: str) -> None:
    hits = index.search("varroa mites sugar roll", k=len(CORPUS), method=method)
    assert sorted(doc_ids(hits)) == sorted(d.id for d in CORPUS)  # dense reaches every chunk
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.dense_rank is not None for h in hits)
    assert {h.doc_id for h in hits if h.bm25_rank is not None} == {"oxalic-1", "oxalic-2", "oxalic-3", "count"}
    assert hits[0].doc_id == "count"  # the only chunk with "sugar" and "roll": first on both legs


def dense_order(hits: list[Hit]) -> list[float]:
    """The hits' dense scores, rounded: near-copies tie, and a tie may come out in either order."""
    return [round(h.dense_score, 5) for h in hits]  # type: ignore[arg-type]


def test_convex_weight_one_is_the_dense_ranking(index) -> None:
    query = "guard bees calm smoke"
    dense = index.search(query, k=len(CORPUS), mode="dense")
    fused = index.search(query, k=len(CORPUS), method="convex", weight=1.0)
    assert dense_order(fused) == dense_order(dense) and set(doc_ids(fused)) == set(doc_ids(dense))
    assert fused[0].doc_id == dense[0].doc_id == "smoke"


def test_convex_weight_zero_puts_the_bm25_ranking_first(index) -> None:
    query = "varroa sugar roll bees"
    bm25 = index.search(query, k=len(CORPUS), mode="bm25")
    fused = index.search(query, k=len(CORPUS), method="convex", weight=0.0)
    assert doc_ids(fused)[: len(bm25)] == doc_ids(bm25)


def test_depth_one_still_returns_k_hits_from_the_union(index) -> None:
    hits = index.search("varroa mites", k=2, depth=1)
    assert 1 <= len(hits) <= 2 and all(h.bm25_rank in (None, 1) and h.dense_rank in (None, 1) for h in hits)


# -- grouping and diversity -------------------------------------------------------------------------
def test_group_by_document_keeps_the_best_chunk_of_each(long_index) -> None:
    plain = long_index.search("swarming", k=20, mode="bm25")
    assert doc_ids(plain).count("guide") == 3  # three sections mention swarming
    grouped = long_index.search("swarming", k=20, mode="bm25", group_by="document")
    assert doc_ids(grouped) == ["guide"]
    assert grouped[0].chunk_id == plain[0].chunk_id and grouped[0].rank == 1


def test_group_by_neighbors_merges_touching_chunks_of_a_document(long_index) -> None:
    plain = long_index.search("swarming", k=3, mode="bm25")
    spans = sorted((h.start, h.end) for h in plain)
    merged = long_index.search("swarming", k=3, mode="bm25", group_by="neighbors")
    guide = [h for h in merged if h.doc_id == "guide"]
    assert len(guide) == 2  # sections 0 and 1 touch and merge; section 4 stands apart
    first, apart = sorted(guide, key=lambda h: h.start)
    assert (first.start, first.end) == (spans[0][0], spans[1][1]) and (apart.start, apart.end) == spans[2]
    assert SECTIONS[0] in first.text and SECTIONS[1] in first.text and SECTIONS[4] == apart.text
    assert [h.rank for h in merged] == list(range(1, len(merged) + 1))


def test_mmr_trades_near_duplicates_for_variety(index) -> None:
    query = "treat varroa mites"
    plain = index.search(query, k=3)
    assert set(doc_ids(plain)) == {"oxalic-1", "oxalic-2", "oxalic-3"}, "the three near-copies rank first"
    diverse = index.search(query, k=3, mmr=True, mmr_lambda=0.5)
    assert len(diverse) == 3 and len(set(doc_ids(diverse)) - {"oxalic-1", "oxalic-2", "oxalic-3"}) >= 1
    assert diverse[0].doc_id == plain[0].doc_id  # the most relevant stays first


def test_mmr_lambda_one_is_plain_relevance(index) -> None:
    query = "treat varroa mites"
    assert doc_ids(index.search(query, k=4, mmr=True, mmr_lambda=1.0)) == doc_ids(index.search(query, k=4))


# -- saved settings ---------------------------------------------------------------------------------
def test_saved_settings_apply_to_plain_search_and_survive_reopening(index, tmp_path: Path) -> None:
    index.save_retrieval_settings({"method": "convex", "weight": 1.0})
    query = "guard bees calm smoke"
    assert dense_order(index.search(query, k=5)) == dense_order(index.search(query, k=5, mode="dense"))
    assert dense_order(index.search(query, k=5, method="convex", weight=0.0)) != dense_order(index.search(query, k=5))
    index.close()
    with open_fake_index(tmp_path / "kb.ragkit") as again:
        assert again.config.retrieval == {"method": "convex", "weight": 1.0}
        assert dense_order(again.search(query, k=5)) == dense_order(again.search(query, k=5, mode="dense"))
        # a call's own settings override the saved ones
        assert doc_ids(again.search(query, k=5, weight=0.0))[0] == again.search(query, k=1, mode="bm25")[0].doc_id


@pytest.mark.parametrize("settings", [{"weight": 3.0}, {"method": "nope"}, {"weight": float("nan")}])
def test_invalid_settings_are_not_saved(index, settings: dict) -> None:
    with pytest.raises(ConfigError):
        index.save_retrieval_settings(settings)
    assert index.config.retrieval is None


# -- issue 14: typed search options, exact fill-in scores, min_score, source in JSON ------------------
def test_search_options_are_typed_keywords_matching_retrieval_settings(index) -> None:
    import dataclasses
    import inspect

    from ragkit.retrieval.settings import RetrievalSettings

    params = inspect.signature(type(index).search).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())  # no **settings
    assert {f.name for f in dataclasses.fields(RetrievalSettings)} <= set(params)
    with pytest.raises(TypeError, match="mehtod"):
        index.search("varroa", k=3, mehtod="rrf")


def test_a_hit_a_leg_missed_shows_that_legs_exact_score_and_no_rank(index) -> None:
    hits = index.search("varroa mites sugar roll", k=len(CORPUS), depth=2)  # the legs disagree on #2
    missed = [h for h in hits if h.dense_rank is None]
    assert missed and all(h.dense_score is not None for h in missed)
    dense = {h.chunk_id: h.dense_score for h in index.search("varroa mites sugar roll", k=len(CORPUS), mode="dense")}
    for h in missed:
        assert h.dense_score == pytest.approx(dense[h.chunk_id], abs=1e-5)
    no_bm25 = [h for h in hits if h.bm25_rank is None]
    assert no_bm25 and all(h.bm25_score is not None for h in no_bm25)
    assert all(h.bm25_score is None for h in index.search("varroa", k=3, mode="dense"))  # leg not searched


def test_min_score_drops_hits_whose_fused_score_is_below_it(index) -> None:
    everything = index.search("varroa mites", k=len(CORPUS))
    cut = everything[2].score
    kept = index.search("varroa mites", k=len(CORPUS), min_score=cut)
    assert kept and all(h.score >= cut for h in kept)
    assert [h.chunk_id for h in kept] == [h.chunk_id for h in everything if h.score >= cut]
    assert index.search("varroa mites", k=3, min_score=1e9) == []
    with pytest.raises(ConfigError, match="min_score"):
        index.search("varroa", k=3, min_score=float("nan"))


def test_hit_to_dict_has_source_at_the_top(index) -> None:
    hit = Hit("c", "d", "t", 1.0, {"source": "a/b.md"})
    assert hit.to_dict()["source"] == "a/b.md" and hit.to_dict()["metadata"] == {"source": "a/b.md"}
    assert Hit("c", "d", "t", 1.0).to_dict()["source"] is None


def test_hybrid_search_tells_adaptive_fusion_how_many_distinct_terms_the_query_has(index, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ragkit.retrieval import retriever

    seen = []
    real = retriever.adaptive_fusion

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["query_terms"])
        return real(*args, **kwargs)

    monkeypatch.setattr(retriever, "adaptive_fusion", spy)
    hits = index.search("varroa mites varroa", k=3)
    assert hits and seen == [2]  # "varroa" twice counts once
