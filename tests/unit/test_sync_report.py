"""The sync report (``SyncReport.summary``/``to_dict``) and ``ragkit index``'s output of it: counts plus the
first few names by default, every name with ``-v``, everything as JSON with ``--json``; ``--dry-run``,
remembered patterns, ``--prefix`` and ``--rebuild`` keeping a folder's settings, in-process on the fake
embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FakeEmbedder, open_fake_index

from ragkit.cli import commands
from ragkit.cli.sync_report import format_report
from ragkit.types import FailedFile, SkippedFile, SyncReport

REPORT = SyncReport(
    added=tuple(f"page{i}.md" for i in range(8)), updated=("a.md",), renamed=(("old.md", "new.md"),),
    removed=("gone.md",), unchanged=("same.md",), failed=(FailedFile("bad.pdf", "encrypted PDF"),),
    chunks_embedded=3, chunks_total=40, seconds=0.5,
    skipped=(*(SkippedFile(f"img/{i}.png", "image", ".png") for i in range(243)),
             SkippedFile("site.css", "site asset", ".css"), SkippedFile("yarn.lock", "lock file"),
             SkippedFile("drafts/", "excluded", "exclude 'drafts/**'")),
)


def test_summary_counts_every_outcome_and_the_skipped_by_reason() -> None:
    assert REPORT.summary() == (
        "8 added, 1 updated, 1 renamed, 1 removed, 1 unchanged, 1 failed; 3 chunks embedded, 40 in index (0.50s); "
        "skipped 243 images, 1 excluded by a pattern (1 folder), 1 lock file, 1 site asset (css/js/map)")
    assert SyncReport(added=("a.md",)).summary() == (
        "1 added, 0 updated, 0 renamed, 0 removed, 0 unchanged, 0 failed; 0 chunks embedded, 0 in index (0.00s)")


def test_to_dict_holds_everything_as_json() -> None:
    data = json.loads(json.dumps(REPORT.to_dict()))
    assert data["added"] == list(REPORT.added) and data["renamed"] == [{"from": "old.md", "to": "new.md"}]
    assert data["failed"] == [{"path": "bad.pdf", "reason": "encrypted PDF"}]
    assert len(data["skipped"]) == 246 and data["skipped"][-1] == {"path": "drafts/", "reason": "excluded",
                                                                     "detail": "exclude 'drafts/**'"}
    assert data["skipped_counts"] == {"image": 243, "excluded": 1, "lock file": 1, "site asset": 1}
    assert data["summary"] == REPORT.summary() and data["dry_run"] is False


def test_the_default_output_shows_the_first_few_names_and_verbose_all() -> None:
    short = format_report(REPORT, "docs -> kb", verbose=False).splitlines()
    assert short[0] == "docs -> kb: " + REPORT.summary()
    assert short[1] == "  added (8): page0.md, page1.md, page2.md, page3.md, page4.md, … and 3 more"
    assert "  renamed (1): old.md -> new.md" in short and "  failed (1): bad.pdf: encrypted PDF" in short
    assert "  skipped, images (243): img/0.png, img/1.png, img/2.png, img/3.png, img/4.png, … and 238 more" in short
    assert short[-1] == "  (-v lists every file; --json prints the whole report)"
    full = format_report(REPORT, "docs -> kb", verbose=True)
    assert "page7.md" in full and "img/99.png (.png)" in full and "drafts/ (exclude 'drafts/**')" in full
    assert "  unchanged (1): same.md" in full and "-v lists" not in full


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run ``ragkit`` in-process with the fake embedder; returns (exit code, stdout, stderr)."""
    opened = commands.open_index
    monkeypatch.setattr(commands, "open_index", lambda path, **kw: opened(
        path, embedder=FakeEmbedder(), **{k: v for k, v in kw.items() if k != "model"}))

    def run(*argv: str) -> tuple[int, str, str]:
        code = commands.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def site(root: Path) -> Path:
    for rel in ["index.md", "guide.md", "drafts/wip.md", "css/site.css", "js/app.min.js", "img/a.png", "yarn.lock"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n\nText of {rel}.\n", encoding="utf-8")
    return root


def test_ragkit_index_reports_skips_and_remembers_patterns(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    docs, kb = site(tmp_path / "docs"), str(tmp_path / "kb")
    code, out, _ = cli("index", str(docs), "--index", kb, "--exclude", "drafts/", "-q")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith("2 added, 0 updated, 0 renamed, 0 removed, 0 unchanged, 0 failed; 2 chunks embedded, "
                             "2 in index" + lines[0].split("2 in index")[1])
    assert "skipped 1 excluded by a pattern (1 folder), 1 image, 1 lock file, 1 minified file, 1 site asset" in lines[0]
    assert "  skipped, site assets (css/js/map) (1): css/site.css" in lines
    assert "  note: exclude patterns (none) -> 'drafts/' (remembered)" in lines
    code, out, _ = cli("index", str(docs), "--index", kb, "-q", "--json")
    data = json.loads(out)
    assert data["exclude"] == ["drafts/"] and data["unchanged"] == ["guide.md", "index.md"] and not data["added"]
    code, out, _ = cli("index", str(docs), "--index", kb, "-q", "--reset-patterns", "-v")
    assert "  added (1): drafts/wip.md" in out and "  unchanged (2): guide.md, index.md" in out
    assert "forgot the remembered patterns (exclude 'drafts/')" in out


def test_ragkit_index_dry_run_writes_nothing(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    docs, kb = site(tmp_path / "docs"), tmp_path / "kb"
    code, out, _ = cli("index", str(docs), "--index", str(kb), "--dry-run", "-q")
    assert code == 0 and not kb.exists()
    assert "dry run, nothing written: would be 3 added" in out and "3 to embed (about " in out
    code, _, err = cli("index", str(docs), "--index", str(kb), "--dry-run", "--rebuild")
    assert code == 2 and "--dry-run and --rebuild" in err


def test_prefix_and_a_rebuild_keep_the_folders_namespace_and_patterns(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    docs, kb = site(tmp_path / "docs"), str(tmp_path / "kb")
    assert cli("index", str(docs), "--index", kb, "--prefix", "site", "--exclude", "drafts/", "-q")[0] == 0
    code, out, _ = cli("index", str(docs), "--index", kb, "--rebuild", "-q")
    assert code == 0 and "2 added" in out and "0 chunks embedded" in out
    with open_fake_index(kb) as index:
        assert sorted(d.id for d in index.documents()) == ["site/guide.md", "site/index.md"]
        assert index.folder_settings(docs).exclude == ("drafts/",)
    code, out, _ = cli("index", str(docs), "--index", kb, "--prefix", "other", "-q")
    assert code == 0 and "  note: namespace 'site' -> 'other': every document of this folder moves" in out
