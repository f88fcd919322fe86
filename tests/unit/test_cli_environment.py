"""The system refusing a write under the CLI (issue 19): one line naming the path and what to do,
exit code 2, no traceback, and the previous index intact."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from fakes import FakeEmbedder, open_fake_index
from ragkit.cli.commands import main


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(docs folder, index) synced once; the CLI's Index gets the fake embedder."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cookies.md").write_text("# Cookies\n\nSet a cookie with the Set-Cookie header.\n", encoding="utf-8")
    (docs / "cache.md").write_text("# Caching\n\nCache-Control says how long a response is reused.\n", encoding="utf-8")
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        assert not index.sync(docs).failed
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    return docs, tmp_path / "kb.ragkit"


def search(capsys: pytest.CaptureFixture[str], kb: Path, query: str) -> str:
    assert main(["search", query, "--index", str(kb), "--json"]) == 0
    return capsys.readouterr().out


def disk_full(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/segments/v00000002.tmp1")


@pytest.mark.parametrize("where", ["_write_segment", "write_segment"])  # translated by the store; raw
def test_disk_full_during_a_sync_is_one_line_and_the_index_is_intact(  # type: ignore[no-untyped-def]
        kb: tuple[Path, Path], where: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    docs, index = kb
    before = search(capsys, index, "cookie header")
    (docs / "sessions.md").write_text("# Sessions\n\nA session cookie goes when the browser closes.\n")
    (docs / "cache.md").unlink()
    with monkeypatch.context() as m:
        m.setattr(f"ragkit.storage.local.store.Store.{where}", disk_full)
        code = main(["index", str(docs), "--index", str(index), "-q"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("ragkit index: error: ") and "Traceback" not in err
    assert "no space left on the device; free some space and run it again" in err
    assert "segments" in err or str(index) in err  # names the path
    assert search(capsys, index, "cookie header") == before  # the previous index, unchanged
    assert "cache.md" in search(capsys, index, "Cache-Control")
    assert main(["check", "--index", str(index)]) == 0
    capsys.readouterr()
    assert main(["index", str(docs), "--index", str(index), "-q"]) == 0  # space again: the sync goes through
    capsys.readouterr()
    assert "sessions.md" in search(capsys, index, "session cookie browser")


@pytest.mark.parametrize("code,advice", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                         (errno.EMFILE, "ulimit -n")])
def test_other_refusals_name_the_path_and_what_to_do(  # type: ignore[no-untyped-def]
        kb: tuple[Path, Path], code: int, advice: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    docs, index = kb

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(code, "refused", str(index / "segments"))

    (docs / "new.md").write_text("# New\n\nSomething new.\n")
    monkeypatch.setattr("ragkit.storage.local.store.Store.write_segment", refuse)
    assert main(["index", str(docs), "--index", str(index), "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and advice in err and str(index / "segments") in err


def test_a_command_other_than_index_is_one_line_too(kb: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _, index = kb

    def too_many(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr("ragkit.index.Index.gc", too_many)
    assert main(["gc", "--index", str(index)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ragkit gc: error: ") and len(err.splitlines()) == 1
    assert str(index) in err and "ulimit -n" in err


def test_an_oserror_without_errno_is_a_bug_and_keeps_its_traceback(kb: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, index = kb

    def bug(*_args: object, **_kwargs: object) -> None:
        raise OSError("something odd")

    monkeypatch.setattr("ragkit.index.Index.gc", bug)
    with pytest.raises(OSError, match="something odd"):
        main(["gc", "--index", str(index)])
