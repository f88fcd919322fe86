"""BM25 over whole documents from chunk postings (``ragkit.storage.bm25_documents``): it scores as an
index of the whole documents' token lists does, within a filter as an index of only its rows, and an
``Index`` mixes it into each chunk's score by ``bm25_document_weight``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakes import open_fake_index
from ragkit import ConfigError, Document
from ragkit.storage.bm25 import BM25Index, BM25Params, bm25_ideal_score
from ragkit.storage.base import Query
from ragkit.storage.bm25_documents import document_scores, documents, mix_documents

CHUNKS = [["bee", "hive", "wax"], ["queen", "bee"], ["honey", "wax", "wax"], ["mite", "varroa"],
          ["bee"], ["smoke", "hive", "pine"], ["varroa", "sugar", "roll", "bee"]]
GROUPS = np.array([0, 0, 1, 2, 2, 3, 4])  # documents of 2, 1, 2, 1 and 1 chunks
QUERIES = [["bee", "wax"], ["varroa", "mite", "mite"], ["hive"], ["absent"], ["bee", "absent"]]


def whole_documents(rows: np.ndarray) -> list[list[str]]:
    docs: dict[int, list[str]] = {}
    for row in rows:
        docs.setdefault(int(GROUPS[row]), []).extend(CHUNKS[row])
    return [docs[g] for g in sorted(docs)]


@pytest.mark.parametrize("idf", ["lucene", "okapi"])
def test_document_scores_equal_an_index_of_the_whole_documents(idf: str) -> None:
    params = BM25Params(idf=idf)  # type: ignore[arg-type]
    chunks = BM25Index.build(CHUNKS, params)
    whole = BM25Index.build(whole_documents(np.arange(len(CHUNKS))), params)
    docs = documents(chunks, GROUPS)
    for query in QUERIES:
        scores, ideal = document_scores(chunks, query, docs)
        np.testing.assert_allclose(scores, whole.scores(query), atol=1e-9)
        assert ideal == pytest.approx(bm25_ideal_score(whole, query))


@pytest.mark.parametrize("idf", ["lucene", "okapi"])
def test_within_a_filter_documents_are_scored_as_an_index_of_its_rows(idf: str) -> None:
    params = BM25Params(idf=idf)  # type: ignore[arg-type]
    chunks = BM25Index.build(CHUNKS, params)
    mask = np.isin(GROUPS, [0, 2, 4])
    kept = np.flatnonzero(mask)
    alone = BM25Index.build(whole_documents(kept), params)
    docs = documents(chunks, GROUPS, mask)
    assert docs.n_docs == 3
    for query in QUERIES:
        scores, ideal = document_scores(chunks, query, docs)
        np.testing.assert_allclose(scores[[0, 2, 4]], alone.scores(query), atol=1e-9)
        assert not scores[[1, 3]].any()
        assert ideal == pytest.approx(bm25_ideal_score(alone, query))


def test_the_mix_is_the_same_mix_of_calibrated_shares_and_only_for_matching_chunks() -> None:
    chunks = BM25Index.build(CHUNKS)
    docs = documents(chunks, GROUPS)
    query = ["bee", "wax"]
    own = chunks.whole(query)
    mixed = mix_documents(own, chunks, query, docs, 0.5)
    per_doc, doc_ideal = document_scores(chunks, query, docs)
    expected = 0.5 * own.scores / own.ideal + 0.5 * per_doc[GROUPS] / doc_ideal
    np.testing.assert_allclose(mixed.scores[own.matched] / own.ideal, expected[own.matched])
    assert not mixed.scores[~own.matched].any()  # "mite varroa" holds no query word: not a match
    assert mixed.ideal == own.ideal and mixed.unseen == own.unseen
    assert mix_documents(own, chunks, query, docs, 0.0) is own


def test_out_of_range_weight_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bm25_document_weight"):
        open_fake_index(tmp_path / "x.ragkit", bm25_document_weight=1.5)


FILLER = [Document(f"f{i}", f"Unrelated page {i} about gardens, weather and trains number {i}.") for i in range(8)]
# Each chunk of the section holds one query word; the note, one chunk, holds one.
SECTION = ("The reconciler walks the element tree on every render pass.\n\n"
           "Each child carries a key that names it among its siblings.\n\n"
           "When that changes the state below it is lost.")
NOTE = "Reconciler notes."


def test_a_document_whose_words_are_spread_over_chunks_ranks_by_all_of_them(tmp_path: Path) -> None:
    ranked = {}
    for weight in (0.0, 0.5):
        path = tmp_path / f"w{weight}.ragkit"
        with open_fake_index(path, chunk_size=12, chunk_overlap=0, bm25_document_weight=weight) as index:
            index.add([Document("section", SECTION), Document("note", NOTE), *FILLER])
            ranked[weight] = [h.doc_id for h in index.search("reconciler key state", k=4, mode="bm25")]
        with open_fake_index(path) as reopened:  # stored with the index
            assert reopened.config.bm25_document_weight == weight
    assert ranked[0.0] == ["section", "note", "section", "section"]  # the short note outranks two chunks
    assert ranked[0.5] == ["section", "section", "section", "note"]  # the section holds all three words


def test_documents_numbered_out_of_row_order_score_the_same() -> None:
    chunks = BM25Index.build(CHUNKS)
    relabel = np.array([3, 0, 4, 1, 2])  # rows of document 0 are now document 3, and so on: not sorted
    plain, shuffled = documents(chunks, GROUPS), documents(chunks, relabel[GROUPS])
    for query in QUERIES:
        expected, ideal = document_scores(chunks, query, plain)
        got, got_ideal = document_scores(chunks, query, shuffled)
        np.testing.assert_allclose(got[relabel], expected, atol=1e-12)
        assert got_ideal == pytest.approx(ideal)


def test_with_one_chunk_per_document_the_mix_is_skipped_since_it_changes_nothing() -> None:
    chunks = BM25Index.build(CHUNKS)
    single = documents(chunks, np.arange(len(CHUNKS)))
    assert single.one_chunk_each and not documents(chunks, GROUPS).one_chunk_each
    for query in QUERIES:
        own = chunks.whole(query)
        per_doc, doc_ideal = document_scores(chunks, query, single)
        np.testing.assert_allclose(per_doc, own.scores, atol=1e-12)  # the same numbers, so skipping is exact
        assert doc_ideal == pytest.approx(own.ideal)
        assert mix_documents(own, chunks, query, single, 0.5) is own


def test_a_view_keeps_its_documents_while_a_writer_replaces_one(tmp_path: Path) -> None:
    path = tmp_path / "x.ragkit"
    with open_fake_index(path, chunk_size=12, chunk_overlap=0) as index:
        index.add([Document("section", SECTION), Document("note", NOTE), *FILLER])
    with open_fake_index(path) as reference, open_fake_index(path) as reader:
        query = Query(tuple(reader.analyzer.tokenize("reconciler key state")))
        expected = reference.snapshot().lexical(query, 10)  # scored before the write
        view = reader.snapshot()  # opened before the write, scored after it
        with open_fake_index(path) as writer:  # another writer replaces the section's rows
            writer.add([Document("section", SECTION + "\n\nOne more paragraph about nothing.")])
        got = view.lexical(query, 10)
    np.testing.assert_array_equal(got.ids, expected.ids)
    np.testing.assert_allclose(got.scores, expected.scores)


MANUAL = """# Beekeeping manual

## Varroa treatment

Varroa mites are counted with a sugar roll before any treatment. Oxalic acid is applied in winter
when the colony has no brood, and formic acid in late summer after the honey harvest.

Treatment thresholds depend on the season: three mites per hundred bees in summer is already high.

### Monitoring

A sticky board under the mesh floor shows the natural mite drop. Count it over three days and divide.

## Swarm control

Queen cells along the bottom bars mean the colony prepares to swarm. An artificial swarm moves the
queen to a new box on the old site, so the foragers join her and the old colony raises a new queen.
"""


def _whole_document_index(index) -> tuple[BM25Index, list[str]]:  # type: ignore[no-untyped-def]
    docs = index.documents()
    return BM25Index.build(index.analyzer.tokenize_many([d.text for d in docs])), [d.id for d in docs]


def test_through_an_index_overlaps_and_heading_paths_are_not_counted_twice(tmp_path: Path) -> None:
    # small chunks with overlap: later chunks carry "Beekeeping manual > Varroa treatment" in front
    # and the previous chunk's last sentence; the document's BM25 must still be its text's
    with open_fake_index(tmp_path / "x.ragkit", chunk_size=40, chunk_overlap=16) as index:
        index.add([Document("manual", MANUAL), Document("note", "Varroa mites on a sticky board."),
                   Document("other", "Smoke calms bees before an inspection of the brood.")])
        snap = index.backend.current_snapshot()
        assert snap.repeats is not None and snap.repeats.doc_len.sum() > 0  # overlaps and headings held
        whole, ids = _whole_document_index(index)
        owner = dict(index.backend.store.query("SELECT row, doc_id FROM chunks"))
        groups = snap.document_groups()
        ordinal = {owner[int(r)]: int(g) for r, g in zip(snap.rows, groups)}
        docs = documents(snap.bm25, groups, repeats=snap.repeats)
        for text in ("varroa treatment", "mite drop sticky board", "queen swarm", "beekeeping manual"):
            query = index.analyzer.tokenize(text)
            scores, ideal = document_scores(snap.bm25, query, docs)
            expected = whole.scores(query)
            np.testing.assert_allclose([scores[ordinal[d]] for d in ids], expected, atol=1e-9)
            assert ideal == pytest.approx(bm25_ideal_score(whole, query))
        legacy = documents(snap.bm25, groups)  # without the repeats: the overlaps counted twice
        assert legacy.length[ordinal["manual"]] > docs.length[ordinal["manual"]]
        assert index.backend.verify() == []
        snap.repeats = BM25Index.build([["varroa"] * 999] * snap.bm25.n_docs)  # as a corrupted file would read
        index.backend.load_version = lambda version: snap  # type: ignore[method-assign]
        assert index.backend.verify() == ["BM25's repeats hold more tokens than their rows"]


def test_a_segment_written_before_repeats_reads_and_takes_them_on_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "x.ragkit"
    with open_fake_index(path, chunk_size=40, chunk_overlap=16) as index:
        index.add([Document("manual", MANUAL), Document("note", "Varroa mites on a sticky board.")])
        before = [(h.chunk_id, h.score) for h in index.search("varroa treatment", k=5, mode="bm25")]
        store = index.backend.store
        version = int(store.get_meta("segment", 0))
        arrays, blobs = store.read_segment(version)
        store.write_segment(version + 1, {k: v for k, v in arrays.items() if not k.startswith("repeats_")},
                            {k: v for k, v in blobs.items() if k != "repeat_terms.json"})
        with store.write_transaction() as db:
            store.set_meta(db, "segment", version + 1)
    with open_fake_index(path) as old:  # as an index from before this change: repeats unknown
        snap = old.backend.current_snapshot()
        assert snap.repeats is None
        legacy = [(h.chunk_id, h.score) for h in old.search("varroa treatment", k=5, mode="bm25")]
        assert [c for c, _ in legacy] and legacy != before  # the approximate sums, as before
        old.add([Document("copy", MANUAL)])
        snap = old.backend.current_snapshot()
        assert snap.repeats is not None and snap.repeats.n_docs == snap.bm25.n_docs
        owner = dict(old.backend.store.query("SELECT row, doc_id FROM chunks"))
        of = np.array([owner[int(r)] for r in snap.rows])
        # the old rows' repeats are unknown (none: they sum as before), the new document's are kept
        assert snap.repeats.doc_len[of == "manual"].sum() == 0 < snap.repeats.doc_len[of == "copy"].sum()
