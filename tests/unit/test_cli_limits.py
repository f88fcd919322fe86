"""``ragkit index`` flags for the per-file parse limits (issue 19): they reach ``Index.sync``, ``0``
and ``none`` lift a time or memory limit, and a file over a limit is reported by the flag's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fakes import FakeEmbedder, open_fake_index
from ragkit.cli.commands import main
from ragkit.ingest.limits import DEFAULT_LIMITS


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path/docs`` with one short and one long file; the CLI's Index gets the fake embedder."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "short.md").write_text("# Short\n\nA short note about cookies.\n", encoding="utf-8")
    (folder / "long.md").write_text("# Long\n\n" + "Cookies are set with a header. " * 40, encoding="utf-8")
    with open_fake_index(tmp_path / "kb.ragkit"):
        pass
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def synced_with(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record the keyword arguments ``Index.sync`` is called with."""
    from ragkit.index import Index

    seen: dict[str, Any] = {}
    real = Index.sync

    def sync(self, folder, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(kwargs)
        return real(self, folder, **kwargs)

    monkeypatch.setattr(Index, "sync", sync)
    return seen


def test_defaults_are_the_library_defaults(docs: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    seen = synced_with(monkeypatch)
    code, _, err = run(capsys, "index", str(docs), "--index", str(docs.parent / "kb.ragkit"), "-q")
    assert code == 0, err
    assert seen["max_chars"] == DEFAULT_LIMITS.max_chars
    assert seen["parse_seconds"] == DEFAULT_LIMITS.seconds
    assert seen["page_seconds"] == DEFAULT_LIMITS.page_seconds
    assert seen["parse_memory"] == DEFAULT_LIMITS.memory_bytes


def test_flags_reach_sync_and_zero_or_none_lifts_a_limit(docs: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    seen = synced_with(monkeypatch)
    code, _, err = run(capsys, "index", str(docs), "--index", str(docs.parent / "kb.ragkit"), "-q",
                       "--max-chars", "5_000", "--parse-seconds", "none", "--page-seconds", "0",
                       "--parse-memory-mb", "500")
    assert code == 0, err
    assert seen["max_chars"] == 5000
    assert seen["parse_seconds"] is None and seen["page_seconds"] is None
    assert seen["parse_memory"] == 500_000_000


@pytest.mark.parametrize("flag,value", [("--parse-seconds", "-1"), ("--parse-memory-mb", "lots"),
                                        ("--max-chars", "-5"), ("--max-chars", "1.5")])
def test_a_bad_value_is_a_usage_error(docs: Path, flag: str, value: str, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(["index", str(docs), "--index", str(docs.parent / "kb.ragkit"), flag, value])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


def test_text_too_long_is_reported_by_the_flag_and_the_rest_is_indexed(docs: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    kb = docs.parent / "kb.ragkit"
    code, out, err = run(capsys, "index", str(docs), "--index", str(kb), "-q", "--max-chars", "300")
    assert code == 0, err
    failed = [line for line in err.splitlines() if "failed:" in line]
    assert len(failed) == 1 and "long.md" in failed[0]
    assert "text too long:" in failed[0] and "(--max-chars)" in failed[0] and "max_chars" not in failed[0]
    code, out, err = run(capsys, "search", "short note", "--index", str(kb), "--json")
    assert code == 0 and "short.md" in out and "long.md" not in out


def test_too_complex_is_reported_by_the_flag(docs: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    # a file of 1 MB or more is parsed in a worker process, which cannot start in a millisecond
    (docs / "big.txt").write_text("word " * 220_000, encoding="utf-8")
    code, _, err = run(capsys, "index", str(docs), "--index", str(docs.parent / "kb.ragkit"), "-q",
                       "--parse-seconds", "0.001")
    assert code == 0, err
    failed = [line for line in err.splitlines() if "failed:" in line]
    assert len(failed) == 1 and "big.txt" in failed[0]
    assert "too complex: parsing took over 0.001 s (--parse-seconds)" in failed[0]
