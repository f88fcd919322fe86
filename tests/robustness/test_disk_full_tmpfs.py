"""A real full disk under ``ragkit index`` (issue 19): a small tmpfs filled during a sync. The CLI says
one line and exits 2, the previous index still opens and searches as before, and once space is freed
the next sync goes through. Needs permission to mount (root); skipped elsewhere."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from fakes import FakeEmbedder, open_fake_index
from ragkit.cli.commands import main


# 3 MB: the index itself fills the disk, so SQLite's checkpoint cannot grow the database file and the
# committed pages stay in its write-ahead log (which once read as a truncated, damaged index).
@pytest.fixture(params=["3m", "8m"])
def small_disk(tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Write a filler file until the disk is full, then free ``leave`` bytes of it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def search(capsys: pytest.CaptureFixture[str], kb: Path, query: str) -> str:
    assert main(["search", query, "--index", str(kb), "--json"]) == 0
    return capsys.readouterr().out


def test_a_full_disk_during_a_sync(small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cookies.md").write_text("# Cookies\n\nSet a cookie with the Set-Cookie header.\n", encoding="utf-8")
    kb = small_disk / "kb.ragkit"
    with open_fake_index(kb) as index:
        assert not index.sync(docs).failed
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    before = search(capsys, kb, "cookie header")
    assert "cookies.md" in before

    # ~600 KB of new text in many chunks: more than the 64 KB the disk has left (the 8 MB it has once
    # the filler goes are plenty: a checkpoint that cannot grow the database leaves it in the WAL)
    (docs / "big.md").write_text("\n\n".join(f"Paragraph {i} tells of tea, kettles and leaves number {i}."
                                             for i in range(10_000)), encoding="utf-8")
    filler = fill(small_disk, leave=64 * 1024)
    code = main(["index", str(docs), "--index", str(kb), "-q"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("ragkit index: error: ") and str(kb) in err
    assert "no space left on the device; free some space and run it again" in err

    assert search(capsys, kb, "cookie header") == before  # the previous index, as it was
    assert "big.md" not in search(capsys, kb, "tea kettles leaves")
    assert main(["check", "--index", str(kb)]) == 0, capsys.readouterr().out
    capsys.readouterr()

    filler.unlink()  # space again: the next sync goes through
    code = main(["index", str(docs), "--index", str(kb), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "big.md" in search(capsys, kb, "tea kettles leaves")
    assert main(["check", "--index", str(kb)]) == 0
