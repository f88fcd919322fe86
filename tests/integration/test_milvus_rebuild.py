"""``--rebuild`` on Milvus Lite cannot destroy: it builds new collections and switches a pointer to them.

One small Milvus Lite index per module (three notes, the real model). The failing rebuilds (a
missing folder, Ctrl-C mid-build, another writer holding the lock) must leave the old collections
answering as before, with nothing half built left over; the successful one (another chunk size,
through the CLI) must change the chunks, and an Index opened before it must see them on its next
search. Runs in file order: the successful rebuild is last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("milvus_lite")

from ragkit.cli.commands import main
from ragkit.errors import IndexLockedError, RebuildError
from ragkit.index import Index
from ragkit.storage.base import StaleSnapshot
from ragkit.storage.milvus import pointer
from ragkit.storage.milvus.collections import MilvusCollections
from ragkit.storage.milvus.swap import rebuild

WORDS = ("Varroa mites ride on worker bees and breed in capped brood cells; a colony that is never "
         "treated for varroa usually collapses within two or three years. ")
NOTES = {
    "varroa.md": "# Varroa\n\n" + WORDS * 6,
    "honey.md": "# Honey\n\n" + "Extract honey from capped frames in late summer, and leave the bees enough stores. " * 6,
    "swarms.md": "# Swarms\n\n" + "Queen cells along the bottom of the frames mean the colony prepares to swarm. " * 6,
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("milvus-rebuild")
    docs = base / "docs"
    docs.mkdir()
    for name, text in NOTES.items():
        (docs / name).write_text(text, encoding="utf-8")
    uri = f"milvus-lite://{base / 'kb.db'}"
    assert main(["index", str(docs), "--index", uri, "-q"]) == 0
    reader = Index(uri)  # open for the whole module, like a running server
    yield {"uri": uri, "docs": docs, "reader": reader}
    reader.close()


def state(reader: Index) -> tuple[Any, ...]:
    """What a user sees of the index: its counts, the top hit of a query, the collections behind it."""
    hits = reader.search("varroa treatment", k=3)
    names = sorted(reader.backend.client.list_collections())
    return reader.backend.counts(), [(h.source, h.text) for h in hits], names


def test_rebuild_with_a_missing_folder_leaves_the_index_answering(kb: dict[str, Any], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = state(kb["reader"])
    assert main(["index", str(tmp_path / "no-such-folder"), "--index", kb["uri"], "--rebuild"]) == 2
    assert "untouched" in capsys.readouterr().err

    def build(uri: str) -> Any:  # the library path, past the CLI's own check
        with Index(uri, create=True) as index:
            return index.sync(tmp_path / "no-such-folder")

    with pytest.raises(RebuildError, match="untouched"):
        rebuild(kb["uri"], build)
    assert state(kb["reader"]) == before


def test_a_rebuild_interrupted_mid_build_leaves_the_index_intact(kb: dict[str, Any]) -> None:
    before = state(kb["reader"])

    def build(uri: str) -> Any:
        with Index(uri, create=True) as index:
            report = index.sync(kb["docs"])  # the new collections are filled, from the old vectors...
            assert report.chunks_embedded == 0 and index.backend.counts() == before[0]
        raise KeyboardInterrupt  # ...when Ctrl-C comes

    with pytest.raises(KeyboardInterrupt):
        rebuild(kb["uri"], build)
    assert state(kb["reader"]) == before  # the half-built collections are gone too


def test_another_writer_holding_the_lock_stops_the_rebuild(kb: dict[str, Any]) -> None:
    before = state(kb["reader"])
    with Index(kb["uri"]) as other, other.backend.writer_lock(0.0), pytest.raises(IndexLockedError, match="untouched"):
        rebuild(kb["uri"], lambda uri: pytest.fail("built while another writer held the index"))
    assert state(kb["reader"]) == before


def test_a_rebuild_with_another_chunk_size_switches_an_open_index(kb: dict[str, Any]) -> None:
    reader = kb["reader"]
    (counts, _, _) = state(reader)
    leftover = MilvusCollections(reader.backend.client, reader.backend.cols.types, "ragkit__g7", None)
    leftover.create_small()  # what a rebuild killed mid-build leaves
    in_flight = reader.backend.cols  # what a search running across the switch reads

    args = ["index", str(kb["docs"]), "--index", kb["uri"], "--rebuild", "--chunk-size", "64", "--chunk-overlap", "8"]
    assert main([*args, "-q"]) == 0

    hits = reader.search("varroa treatment", k=3)  # the same Index object, on its next search
    assert reader.config.chunk_size == 64
    assert reader.backend.counts()["chunks"] > counts["chunks"]
    assert hits and hits[0].source == "varroa.md" and len(hits[0].text) < len(NOTES["varroa.md"]) / 2
    names = set(reader.backend.client.list_collections())
    assert pointer.pointer_collection("ragkit") in names
    assert set(pointer.generation_collections(list(names), "ragkit")) == {"ragkit__g1"}  # old and leftover dropped
    with pytest.raises(StaleSnapshot):  # a search on the dropped collections retries on the new ones
        in_flight.query("", "pk >= 0", ["pk"], limit=1)
    with Index(kb["uri"]) as fresh:
        assert fresh.backend.counts() == reader.backend.counts() and fresh.config.chunk_size == 64


KILLED_REBUILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from fakes import open_fake_index
from ragkit.storage.milvus import pointer, swap

def build(uri):
    with open_fake_index(uri, chunk_size=64, chunk_overlap=8) as index:
        index.sync({docs!r})
    if {moment!r} == "before the switch":
        os.kill(os.getpid(), signal.SIGKILL)

switch = pointer.point_to
def switch_and_die(*args):
    switch(*args)
    os.kill(os.getpid(), signal.SIGKILL)
if {moment!r} == "after the switch":
    pointer.point_to = switch_and_die  # the failure point only
swap.rebuild({uri!r}, build)
"""


@pytest.mark.parametrize("moment", ["before the switch", "after the switch"])
def test_a_killed_rebuild_leaves_one_whole_index_and_the_next_removes_its_leftovers(
        kb: dict[str, Any], tmp_path: Path, moment: str) -> None:
    import subprocess
    import sys

    from fakes import open_fake_index

    uri = f"milvus-lite://{tmp_path / 'killed.db'}"  # its own file: Milvus Lite lets one process open one
    with open_fake_index(uri) as index:
        index.sync(kb["docs"])
        before = index.backend.counts()
    script = KILLED_REBUILD.format(tests=str(Path(__file__).parents[1]), docs=str(kb["docs"]), moment=moment, uri=uri)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr

    with open_fake_index(uri) as index:
        names = index.backend.client.list_collections()
        assert set(pointer.generation_collections(names, "ragkit")) == {"ragkit", "ragkit__g1"}  # both whole
        counts = index.backend.counts()
        assert (counts == before) == (moment == "before the switch"), counts
        assert index.search("varroa treatment", k=1)[0].source == "varroa.md"

    def build(new: str) -> Any:
        with open_fake_index(new) as index:
            return index.sync(kb["docs"])

    rebuild(uri, build)
    with open_fake_index(uri) as index:
        names = index.backend.client.list_collections()
        assert set(pointer.generation_collections(names, "ragkit")) == {index.backend.cols.name}
        assert index.backend.counts() == before
