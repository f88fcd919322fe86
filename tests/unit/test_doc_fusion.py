"""Document-grouped search (``group_by="document"``) returns ``k`` documents whenever the fused
candidates hold that many, however many chunks the best documents have (issue 15, Build item 3).

Before, grouping took the best ``3 * k`` chunks and kept one per document, so a document with more
than ``3 * k`` matching chunks hid every other document: a search for 3 documents returned 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeEmbedder, open_fake_index

from ragkit import Document

# A guide of 30 sections (one chunk each at chunk_size=12), every one about swarming, and three
# notes that mention swarming once each (and one about honey).
GUIDE = " ".join(f"Section {i} explains swarming and swarming control for beginners." for i in range(30))
NOTES = [
    Document("note-swarm", "A swarming colony leaves with the old queen in May."),
    Document("note-cells", "Queen cells on the frame edges warn of swarming soon."),
    Document("note-split", "Split a strong colony before swarming starts."),
    Document("note-honey", "Extract honey when most of the frame is capped with wax."),
]


@pytest.fixture
def guide_index(tmp_path: Path):  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "guide.ragkit", FakeEmbedder(), chunk_size=12, chunk_overlap=0) as index:
        index.add([Document("guide", GUIDE), *NOTES])
        yield index


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_grouped_search_reads_past_one_documents_many_chunks(guide_index, mode: str) -> None:
    plain = guide_index.search("swarming control", k=6, mode=mode)
    assert {h.doc_id for h in plain} == {"guide"}  # the guide's chunks fill the plain top 6
    grouped = guide_index.search("swarming control", k=3, mode=mode, group_by="document")
    assert len(grouped) == 3 and len({h.doc_id for h in grouped}) == 3
    assert grouped[0].doc_id == "guide" and grouped[0].chunk_id == plain[0].chunk_id
    assert [h.rank for h in grouped] == [1, 2, 3]


def test_grouped_search_keeps_the_fused_order_of_documents(guide_index) -> None:
    wide = guide_index.search("swarming control", k=100)
    order = list(dict.fromkeys(h.doc_id for h in wide))  # each document at its best chunk's rank
    grouped = guide_index.search("swarming control", k=4, group_by="document")
    assert [h.doc_id for h in grouped] == order[:4]


def test_grouped_search_returns_fewer_only_when_fewer_documents_match(guide_index) -> None:
    grouped = guide_index.search("swarming control", k=10, mode="bm25", group_by="document")
    assert {h.doc_id for h in grouped} == {"guide", "note-swarm", "note-cells", "note-split"}


def test_neighbours_merged_still_fill_k(guide_index) -> None:
    merged = guide_index.search("swarming control", k=3, mode="bm25", group_by="neighbors")
    assert len(merged) == 3  # the guide's touching chunks merge into one passage; the notes fill up
