"""A filtered search scores as if the filtered chunks were the whole collection, with the real model, on
both backends (issue 20, tenancy): index X holds team a's documents, index Y holds them and team b's
(the same words, other frequencies and lengths); a search on Y under ``{"team": "a"}`` gives X's hits,
scores, per-leg scores, relevance and ``min_score="auto"`` cut. See tests/unit/test_scope_statistics.py
for the property test over random scopes (fake embedder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import index_location, open_index

from ragkit import Document

A = [Document(f"a-{i}", text, {"team": "a"}) for i, text in enumerate([
    "Varroa mites are parasites of honey bees; treat the colony with oxalic acid in winter.",
    "Swarming colonies leave the hive with the old queen in May; catch the swarm in a box.",
    "Harvest honey when the frames are capped and spin the frames in an extractor.",
    "Bees build comb from wax; old comb darkens and should be replaced every few years.",
])]
B = [Document(f"b-{i}", text, {"team": "b"}) for i, text in enumerate([
    "Honey bees, honey bees and more honey: the colony stores honey in comb above the brood.",
    "The queen lays eggs in the brood comb; bees feed the larvae honey and pollen.",
    "Varroa mites spread viruses between colonies; a colony with many mites loses its bees.",
    "Wax moths eat comb in weak colonies; freeze frames of comb before storing them.",
    "A swarm of bees in May is worth a load of hay; honey bees swarm when the hive is crowded.",
])]
QUERIES = ["How do I treat varroa mites?", "when do honey bees swarm", "old wax comb", "the capital of France"]
FIELDS = ("score", "bm25_score", "dense_score", "relevance")


def evidence(hits: list) -> dict:  # type: ignore[type-arg]
    """Each hit's numbers by chunk id (Milvus orders exact ties by its random row keys, so by id here)."""
    return {h.chunk_id: tuple(float("nan") if getattr(h, f) is None else getattr(h, f) for f in FIELDS)
            for h in hits}


@pytest.mark.parametrize("idf", ["lucene", "okapi"])
def test_a_scoped_search_equals_the_search_on_an_index_of_the_scope_alone(backend, tmp_path: Path, idf) -> None:  # type: ignore[no-untyped-def]
    with open_index(index_location(backend, tmp_path, "x"), bm25_idf=idf) as x, \
            open_index(index_location(backend, tmp_path, "y"), bm25_idf=idf) as y:
        x.add(A)
        y.add([B[0], A[0], A[1], B[1], B[2], A[2], B[3], A[3], B[4]])
        moved = 0
        for query in QUERIES:
            for options in ({"mode": "hybrid"}, {"mode": "bm25"}, {"mode": "dense"}, {"min_score": "auto"},
                            *([{"method": "rrf"}] if backend == "local" else [])):  # Milvus ranks ties by row key
                want = x.search(query, 10, **options)
                got = y.search(query, 10, filters={"team": "a"}, **options)
                if backend == "local":
                    assert [h.chunk_id for h in got] == [h.chunk_id for h in want]
                assert evidence(got).keys() == evidence(want).keys(), (query, options)
                tol = 1e-9 if backend == "local" else 1e-6  # Milvus returns cosines in float32
                for chunk, numbers in evidence(got).items():
                    assert numbers == pytest.approx(evidence(want)[chunk], rel=tol, abs=tol, nan_ok=True), (query, options, chunk)
            unscoped = {h.chunk_id: h.score for h in y.search(query, 20)}
            moved += any(unscoped[h.chunk_id] != pytest.approx(h.score) for h in x.search(query, 10))
        assert moved  # the other team's documents do change collection-wide scores: the test can tell
