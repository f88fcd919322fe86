"""The dense leg's document share (``storage.dense_documents``, ``fusion.document_share``): under adaptive
fusion a chunk's cosine is mixed half and half with its document centroid's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakes import embed, open_fake_index
from ragkit import Document
from ragkit.index import embedding_text
from ragkit.retrieval import fusion, retriever
from ragkit.storage.base import LegCandidates, Query
from ragkit.storage.dense_documents import centroids

LONG = {  # three documents of several chunks each (chunk_size=24 words), one of one
    "hive": "Inspect the brood frames for eggs every week in spring. The queen lays in a tight pattern. "
            "Drones hatch from larger cells near the edges. Workers cap the brood after nine days. "
            "Mites breed inside capped brood cells. Add a super when the brood box is full.",
    "varroa": "Varroa mites weaken colonies over the summer. Count the mites on a sticky board. "
              "Treat with oxalic acid when the colony has no brood. Formic acid reaches into capped cells. "
              "Resistant bees groom the mites off each other. Treat again if the count stays high.",
    "honey": "Extract honey from capped frames in late summer. Uncap the cells with a warm knife. "
             "Spin the frames in the extractor slowly at first. Let the honey settle before bottling. "
             "Store jars in a cool dark place. Crystallised honey melts in warm water.",
    "note": "A short note on queen cells.",
}


def documents() -> list[Document]:
    return [Document(doc_id, text) for doc_id, text in LONG.items()]


def test_a_centroid_is_the_unit_mean_of_its_documents_rows_and_one_chunk_has_none() -> None:
    vectors = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8], [0.6, 0.8]], np.float32)
    made = centroids(vectors, np.array([0, 0, 1, 2, 2]))
    got = made.of_rows(np.array([0, 1, 2]))
    assert np.allclose(got[[0, 2]], [[0.7071, 0.7071], [0.6, 0.8]], atol=1e-4)
    assert np.isnan(got[1]).all()  # a one-chunk document: its chunk is all the evidence
    assert made.vectors.shape == (2, 2)  # only documents of several chunks are kept
    assert centroids(np.eye(3, dtype=np.float32), np.arange(3)).vectors.shape == (0, 3)
    shuffled = centroids(vectors, np.array([2, 0, 2, 0, 1]))  # ordinals out of row order
    assert np.allclose(shuffled.of_rows(np.array([2, 0])), [[1, 0], [0.3162, 0.9487]], atol=1e-4)


def test_document_share_mixes_z_scores_and_keeps_the_chunks_scale() -> None:
    rng = np.random.default_rng(0)
    background = rng.normal(0.2, 0.05, 200)
    documents = np.concatenate([rng.normal(0.3, 0.08, 100), np.full(100, np.nan)])  # NaN rows: one chunk
    leg = LegCandidates(np.array([4, 1]), np.array([0.6, 0.2]), np.array([1, 2, 4]), np.array([0.2, 0.0, 0.6]))
    mixed = fusion.document_share(leg, np.array([0.5, np.nan, 0.3]), background, documents, 0.5)
    mean, std = background.mean(), background.std()
    kept = documents[:100]
    own_z = (np.array([0.2, 0.0, 0.6]) - mean) / std
    doc_z = (np.array([0.5, np.nan, 0.3]) - kept.mean()) / kept.std()
    expected = mean + std * np.array([0.5 * own_z[0] + 0.5 * doc_z[0], own_z[1], 0.5 * own_z[2] + 0.5 * doc_z[2]])
    assert np.allclose(mixed.fill_scores, expected)  # type: ignore[arg-type]
    assert mixed.ids.tolist() == [4, 1] and np.allclose(mixed.scores, expected[[2, 0]])
    assert mixed.fill_scores[1] == pytest.approx(0.0)  # type: ignore[index]  # one chunk: unchanged
    thin = np.concatenate([[0.10, 0.12], np.full(1022, np.nan)])  # two sampled rows in shared documents
    assert fusion.document_share(leg, np.array([0.5, np.nan, 0.3]), background, thin, 0.5) is leg


def test_the_local_view_scores_each_row_by_its_documents_centroid(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "x.ragkit", chunk_size=24, chunk_overlap=0) as index:
        index.add(documents())
        view = index.snapshot()
        assert view is not None
        n = len(index)
        chunks = view.fetch(list(range(n)))
        assert n > len(LONG)  # several chunks a document
        query = Query(("varroa",), embed("count varroa mites"))
        got = view.document_scores(query, np.arange(n))
        for doc_id in LONG:
            rows = [i for i, c in enumerate(chunks) if c.doc_id == doc_id]
            if len(rows) == 1:  # the short note
                assert np.isnan(got[rows]).all()
                continue
            mean = np.mean([embed(embedding_text(chunks[i])) for i in rows], axis=0)
            assert np.allclose(got[rows], mean / np.linalg.norm(mean) @ query.vector, atol=1e-5)
        stats = view.statistics(query)
        assert stats.dense_document_background is not None
        assert len(stats.dense_document_background) == len(stats.dense_background) == n


def test_single_chunk_documents_rank_as_without_the_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_fake_index(tmp_path / "x.ragkit") as index:
        index.add([Document(f"d{i}", f"note {i} on bees, hives, {'honey ' * (i % 4)}and wax number {i}")
                   for i in range(30)])
        queries = ("bees honey 3", "wax number", "hives and honey")
        shared = {q: [(h.chunk_id, round(h.score, 9)) for h in index.search(q, k=10)] for q in queries}
        monkeypatch.setattr(retriever, "DENSE_DOCUMENT_SHARE", 0.0)
        assert {q: [(h.chunk_id, round(h.score, 9)) for h in index.search(q, k=10)] for q in queries} == shared


def test_the_share_moves_multi_chunk_documents_and_hits_keep_their_own_cosine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_competence import notes

    with open_fake_index(tmp_path / "x.ragkit", chunk_size=16, chunk_overlap=0) as index:
        index.add(notes(40))  # 40 notes of three chunks
        query = "queen brood varroa winter"
        with_share, convex = index.search(query, k=8), index.search(query, k=8, method="convex")
        filtered = index.search(query, k=8, filters={"doc_id": {"in": [f"n0-{i}" for i in range(20)]}})
        monkeypatch.setattr(retriever, "DENSE_DOCUMENT_SHARE", 0.0)
        without = index.search(query, k=8)
        assert [h.score for h in with_share] != [h.score for h in without]  # the fused score moved
        own = {h.chunk_id: h.dense_score for h in without}
        assert all(h.dense_score == pytest.approx(own[h.chunk_id]) for h in with_share if h.chunk_id in own)
        assert index.search(query, k=8, method="convex") == convex  # adaptive fusion only
        # a filtered search scores chunks alone: a centroid holds rows the filter leaves out
        assert index.search(query, k=8, filters={"doc_id": {"in": [f"n0-{i}" for i in range(20)]}}) == filtered
        view = index.snapshot().filtered({"doc_id": "n0-1"})  # type: ignore[union-attr]
        vector = embed(query)
        assert view.document_scores(Query(("queen",), vector), np.array([0])) is None
        assert view.statistics(Query(("queen",), vector)).dense_document_background is None
