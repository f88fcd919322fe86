"""What a folder listing leaves out and why (``ragkit.ingest.ignore``, ``scan_folder``): site assets, lock
files, images and fonts by default; gitignore-style patterns; nested ``.gitignore``/``.ragkitignore``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit import ConfigError
from ragkit.ingest import files
from ragkit.ingest.files import scan_folder
from ragkit.ingest.ignore import default_skip

SITE = [
    "index.md", "guide/setup.md", "guide/api.html", "notes.txt",
    "css/site.css", "js/app.js", "js/app.mjs", "js/vendor.min.js", "js/app.js.map", "css/theme.min.css",
    "package-lock.json", "yarn.lock", "poetry.lock", "Cargo.lock", "uv.lock", "pnpm-lock.yaml", "x.lock",
    "img/logo.png", "img/photo.JPG", "img/icon.svg", "fonts/inter.woff2", "fonts/mono.ttf", "archive.zip",
]  # fmt: skip


def write(root: Path, rels: list[str] | dict[str, str]) -> Path:
    items = rels.items() if isinstance(rels, dict) else ((r, f"# {r}\n\ntext of {r}\n") for r in rels)
    for rel, text in items:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def reasons(listing: files.Listing) -> dict[str, str]:
    return {s.path: s.reason for s in listing.skipped}


def test_site_assets_lock_files_images_and_fonts_are_skipped_and_each_has_its_reason(tmp_path: Path) -> None:
    listing = scan_folder(write(tmp_path, SITE))
    assert [rel for _, rel in listing.files] == ["guide/api.html", "guide/setup.md", "index.md", "notes.txt"]
    got = reasons(listing)
    assert {got[r] for r in ("css/site.css", "js/app.js", "js/app.mjs", "js/app.js.map")} == {"site asset"}
    assert got["js/vendor.min.js"] == got["css/theme.min.css"] == "minified"
    locks = ("package-lock.json", "yarn.lock", "poetry.lock", "Cargo.lock", "uv.lock", "pnpm-lock.yaml", "x.lock")
    assert {got[r] for r in locks} == {"lock file"}
    assert {got[r] for r in ("img/logo.png", "img/photo.JPG", "img/icon.svg")} == {"image"}
    assert got["fonts/inter.woff2"] == got["fonts/mono.ttf"] == "font"
    assert got["archive.zip"] == "unsupported"
    assert len(listing.skipped) == len(SITE) - 4  # every file is either listed or skipped with a reason


def test_a_type_with_a_registered_loader_is_no_longer_skipped(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path, ["a.md", "scan.png"])
    assert reasons(scan_folder(tmp_path)) == {"scan.png": "image"}
    known = files.has_loader
    monkeypatch.setattr(files, "has_loader", lambda name: name.endswith(".png") or known(name))  # an OCR loader
    assert [rel for _, rel in scan_folder(tmp_path).files] == ["a.md", "scan.png"]
    assert default_skip("x.css", lambda name: True) == ("site asset", ".css")  # a loader for code: still an asset


def test_include_patterns_decide_over_the_default_skips(tmp_path: Path) -> None:
    write(tmp_path, SITE)
    listing = scan_folder(tmp_path, include=["js/*.js"])
    assert [rel for _, rel in listing.files] == ["js/app.js", "js/vendor.min.js"]
    assert reasons(listing)["index.md"] == "excluded"


def test_patterns_have_gitignore_semantics(tmp_path: Path) -> None:
    write(tmp_path, ["a.md", "docs/b.md", "docs/deep/c.md", "drafts/w.md", "keep/drafts/x.md", "build/o.md"])
    rels = lambda **kw: [r for _, r in scan_folder(tmp_path, **kw).files]
    assert rels(exclude=["/drafts/"]) == ["a.md", "build/o.md", "docs/b.md", "docs/deep/c.md", "keep/drafts/x.md"]
    assert rels(exclude=["drafts/"]) == ["a.md", "build/o.md", "docs/b.md", "docs/deep/c.md"]  # at any depth
    assert rels(include=["docs/*.md"]) == ["docs/b.md"]  # '*' does not cross '/'
    assert rels(include=["docs/**/*.md"]) == ["docs/b.md", "docs/deep/c.md"]
    assert rels(exclude=["*.md", "!docs/b.md"]) == ["docs/b.md"]
    skipped = scan_folder(tmp_path, exclude=["build/", "drafts/**"]).skipped
    assert {(s.path, s.detail) for s in skipped} == {("build/", "exclude 'build/'"), ("drafts/", "exclude 'drafts/**'")}


def test_a_bad_pattern_names_its_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exclude pattern '!' is not a valid gitignore-style pattern"):
        scan_folder(write(tmp_path, ["a.md"]), exclude=["ok.md", "!"])


def test_gitignore_and_ragkitignore_files_nested_ones_too(tmp_path: Path) -> None:
    write(tmp_path, ["a.md", "site/x.md", "notes/n.md", "notes/private/p.md", "notes/tmp.md", "dist/d.md"])
    write(tmp_path, {".gitignore": "site/\ndist/\n*.tmp\n# a comment\n", ".ragkitignore": "!dist/\n",
                     "notes/.gitignore": "private/\ntmp.md\n"})
    listing = scan_folder(tmp_path)
    assert [rel for _, rel in listing.files] == ["a.md", "dist/d.md", "notes/n.md"]
    ignored = {s.path: s.detail for s in listing.skipped if s.reason == "ignore file"}
    assert ignored == {"site/": ".gitignore", "notes/private/": "notes/.gitignore", "notes/tmp.md": "notes/.gitignore"}
    assert not any(s.path.endswith("ignore") for s in listing.skipped)  # the rule files are not reported
    everything = [rel for _, rel in scan_folder(tmp_path, ignore_files=False).files]
    assert everything == ["a.md", "dist/d.md", "notes/n.md", "notes/private/p.md", "notes/tmp.md", "site/x.md"]


def test_a_nested_ignore_file_can_take_back_what_an_outer_one_ignores(tmp_path: Path) -> None:
    write(tmp_path, ["docs/a.md", "docs/b.md"])
    write(tmp_path, {".gitignore": "*.md\n", "docs/.ragkitignore": "!b.md\n"})
    assert [rel for _, rel in scan_folder(tmp_path).files] == ["docs/b.md"]


def test_hidden_files_are_reported_once_per_hidden_folder(tmp_path: Path) -> None:
    write(tmp_path, ["a.md", ".git/config.md", ".git/objects/x.md", ".env.md"])
    assert reasons(scan_folder(tmp_path)) == {".env.md": "hidden", ".git/": "hidden"}
