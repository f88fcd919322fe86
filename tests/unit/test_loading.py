"""Tests for ragkit.loading: every format, every failure reason, and the folder walk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pdfutil import make_pdf

from ragkit.errors import LoadError
from ragkit.ingest.loading import SUPPORTED_SUFFIXES, iter_files, load_file


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def load_one(path: Path, rel: str | None = None, **kwargs) -> tuple[str, dict]:
    docs = load_file(path, rel or path.name, **kwargs)
    assert len(docs) == 1
    return docs[0].text, dict(docs[0].metadata)


def rels(root: Path, **kwargs) -> list[str]:
    return [rel for _, rel in iter_files(root, **kwargs)]


def load_error(path: Path, rel: str | None = None, **kwargs) -> LoadError:
    with pytest.raises(LoadError) as info:
        load_file(path, rel or path.name, **kwargs)
    assert info.value.path == (rel or path.name)
    return info.value


# --------------------------------------------------------------------------- plain text formats


def test_markdown_document_id_and_title_skip_fenced_comments(tmp_path: Path) -> None:
    p = write(tmp_path / "guide.md", "intro\n```sh\n# not a title\n```\n## Sub\n# Real Title #\nbody\n")
    docs = load_file(p, "docs/guide.md")
    assert [d.id for d in docs] == ["docs/guide.md"]
    assert docs[0].metadata == {"source": "docs/guide.md", "title": "Real Title", "type": "markdown"}
    assert docs[0].text == "intro\n```sh\n# not a title\n```\n## Sub\n# Real Title #\nbody\n"


def test_text_title_falls_back_to_stem(tmp_path: Path) -> None:
    text, meta = load_one(write(tmp_path / "notes.v2.txt", "no heading here\n"))
    assert meta == {"source": "notes.v2.txt", "title": "notes.v2", "type": "text"}
    assert text == "no heading here\n"


@pytest.mark.parametrize("name", ["script.py", "Dockerfile", "Makefile", "main.RS", "conf.yaml"])
def test_code_files_are_code_and_comments_are_not_titles(tmp_path: Path, name: str) -> None:
    _, meta = load_one(write(tmp_path / name, "# build step\nrun = 1\n"))
    assert meta["type"] == "code"
    assert meta["title"] == Path(name).stem


def test_newlines_normalised_and_control_characters_removed(tmp_path: Path) -> None:
    p = write(tmp_path / "c.txt", b"a\r\nb\rc\x07d\x1b[0m\te\x0cf\xc2\x85g\n")  # \xc2\x85 is U+0085 (NEL)
    text, _ = load_one(p)
    assert text == "a\nb\ncd[0m\tefg\n"


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    text, meta = load_one(write(tmp_path / "b.md", b"\xef\xbb\xbf# Caf\xc3\xa9\n"))
    assert text == "# Café\n"
    assert meta["title"] == "Café"


def test_unknown_suffix_loads_as_text(tmp_path: Path) -> None:
    text, meta = load_one(write(tmp_path / "server.log", "started\n"))
    assert (text, meta["type"]) == ("started\n", "text")


# --------------------------------------------------------------------------- failures


def test_binary_file_is_rejected(tmp_path: Path) -> None:
    err = load_error(write(tmp_path / "x.txt", b"looks like text\x00\x01\x02"))
    assert "binary file" in err.reason


def test_nul_after_sniff_window_is_removed_not_rejected(tmp_path: Path) -> None:
    text, _ = load_one(write(tmp_path / "late.txt", b"a" * 9000 + b"\x00b"))
    assert text == "a" * 9000 + "b"


@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n", b"\xef\xbb\xbf\n", b"\x01\x02\n"])
def test_empty_or_blank_file_is_rejected(tmp_path: Path, content: bytes) -> None:
    assert load_error(write(tmp_path / "e.md", content)).reason == "empty file"


def test_latin1_file_names_the_bad_byte_position(tmp_path: Path) -> None:
    err = load_error(write(tmp_path / "l.txt", "caf\u00e9 au lait".encode("latin-1")))
    assert err.reason.startswith("not valid UTF-8 text")
    assert "0xe9" in err.reason and "position 3" in err.reason


def test_too_large_file_reports_size_and_limit(tmp_path: Path) -> None:
    p = write(tmp_path / "big.txt", "x" * 101)
    err = load_error(p, max_file_bytes=100)
    assert err.reason == "file too large: 101 bytes > limit 100 (max_file_bytes)"
    assert load_one(p, max_file_bytes=101)[0] == "x" * 101


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    assert "cannot read file" in load_error(tmp_path / "gone.txt").reason


def test_load_error_message_names_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"^sub/e\.txt: empty file$"):
        load_file(write(tmp_path / "e.txt", ""), "sub/e.txt")


# --------------------------------------------------------------------------- HTML

PAGE = """<!doctype html>
<html><head><title>My &amp; Page</title>
<style>body { color: red }</style>
<script>var secret = "<p>hidden</p>";</script></head>
<body>
<h1>Main   Title</h1>
<p>Hello&nbsp;<b>bold</b>
   world &lt;3</p>
<div>line one<br>line two</div>
<ul><li>item 1</li><li>item 2</li></ul>
<noscript>enable js</noscript><template><p>tmpl</p></template>
<h3>Sub <i>section</i></h3>
<pre>  code
    indented</pre>
<table><tr><td>a</td><td>b</td></tr></table>
<!-- a comment -->
</body></html>"""


def test_html_visible_text_with_markdown_headings(tmp_path: Path) -> None:
    text, meta = load_one(write(tmp_path / "page.html", PAGE))
    assert meta == {"source": "page.html", "title": "My & Page", "type": "html"}
    assert text == (
        "# Main Title\n\nHello bold world <3\n\nline one\nline two\n\nitem 1\nitem 2\n\n"
        "### Sub section\n\n  code\n    indented\n\n| a | b |\n| --- | --- |"  # a table as Markdown rows (issue 18)
    )
    for hidden in ("secret", "color", "enable js", "tmpl", "comment", "My & Page"):
        assert hidden not in text


def test_html_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    _, meta = load_one(write(tmp_path / "t.htm", "<body><h2>Second</h2><h1>First &quot;one&quot;</h1>x"))
    assert meta["title"] == 'First "one"'


def test_html_only_first_title_counts(tmp_path: Path) -> None:
    html = "<head><title>Real</title></head><body><svg><title>tooltip</title></svg><p>shown</p>"
    text, meta = load_one(write(tmp_path / "svg.html", html))
    assert (text, meta["title"]) == ("shown", "Real")


def test_html_unclosed_head_does_not_hide_body(tmp_path: Path) -> None:
    text, meta = load_one(write(tmp_path / "u.html", "<html><head><title>T</title><body><p>visible"))
    assert text == "visible"
    assert meta["title"] == "T"


def test_html_without_visible_text_is_rejected(tmp_path: Path) -> None:
    err = load_error(write(tmp_path / "s.html", "<script>alert(1)</script><style>p{}</style>"))
    assert err.reason == "no visible text in HTML"


def test_deeply_nested_html(tmp_path: Path) -> None:
    depth = 10_000
    html = "<div>" * depth + "<span>" * depth + "deep  text" + "</span>" * depth + "</div>" * depth
    text, _ = load_one(write(tmp_path / "deep.html", html))
    assert text == "deep text"


# --------------------------------------------------------------------------- PDF


def test_pdf_text_pages_and_title(tmp_path: Path) -> None:
    p = make_pdf(tmp_path / "r.pdf", ["Page one text\nsecond line", "Page (two)", "Page three"], title="Report")
    text, meta = load_one(p)
    assert text == "Page one text\nsecond line\n\nPage (two)\n\nPage three"
    assert meta["pages"] == [[0, 1], [27, 2], [39, 3]]
    assert [text[start:].split("\n\n")[0] for start, _ in meta["pages"]] == [
        "Page one text\nsecond line", "Page (two)", "Page three"
    ]
    assert (meta["title"], meta["type"], meta["source"]) == ("Report", "pdf", "r.pdf")


def test_pdf_blank_page_keeps_true_page_numbers(tmp_path: Path) -> None:
    text, meta = load_one(make_pdf(tmp_path / "gap.pdf", ["first", "", "third"]))
    assert text == "first\n\nthird"
    assert meta["pages"] == [[0, 1], [7, 3]]
    assert meta["title"] == "gap"


def test_pdf_without_text_is_rejected(tmp_path: Path) -> None:
    assert load_error(make_pdf(tmp_path / "blank.pdf", ["", " "])).reason == "no extractable text"


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_pdf_is_rejected(tmp_path: Path, cut: float) -> None:
    data = make_pdf(tmp_path / "full.pdf", ["alpha", "beta"]).read_bytes()
    err = load_error(write(tmp_path / "cut.pdf", data[: int(len(data) * cut)]))
    assert err.reason.startswith("cannot read PDF")


@pytest.mark.parametrize(("user_password", "readable"), [("pw", False), ("", True)])
def test_encrypted_pdf(tmp_path: Path, user_password: str, readable: bool) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=make_pdf(tmp_path / "plain.pdf", ["secret text"]))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    writer.write(tmp_path / "enc.pdf")
    if readable:  # an empty user password only restricts editing; the text is readable
        assert load_one(tmp_path / "enc.pdf")[0] == "secret text"
    else:
        assert load_error(tmp_path / "enc.pdf").reason.startswith("encrypted PDF")


def test_garbage_pdf_is_rejected(tmp_path: Path) -> None:
    assert load_error(write(tmp_path / "x.pdf", b"GIF89a not a pdf")).reason.startswith("not a PDF file")


# --------------------------------------------------------------------------- JSON and JSONL


def test_jsonl_records_ids_and_metadata(tmp_path: Path) -> None:
    lines = [
        {"id": "a1", "text": "first", "lang": "en", "score": 2.5, "tags": ["x"], "nested": {"k": 1}},
        {"text": "no id here", "title": "Custom"},
        {"id": 7, "text": "ctrl\x07char\r\nline", "source": "http://x", "ok": True},
    ]
    body = json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n" + json.dumps(lines[2]) + "\n"
    docs = load_file(write(tmp_path / "d.jsonl", body), "data/d.jsonl")
    assert [d.id for d in docs] == ["data/d.jsonl#a1", "data/d.jsonl#3", "data/d.jsonl#7"]
    assert [d.text for d in docs] == ["first", "no id here", "ctrlchar\nline"]
    assert docs[0].metadata == {"source": "data/d.jsonl", "title": "d", "type": "json", "lang": "en", "score": 2.5}
    assert docs[1].metadata["title"] == "Custom"
    assert docs[2].metadata["source"] == "data/d.jsonl"  # the loader's source wins over a record field
    assert docs[2].metadata["ok"] is True


def test_jsonl_missing_text_field_names_line_and_field(tmp_path: Path) -> None:
    p = write(tmp_path / "m.jsonl", '{"text": "ok"}\n{"text": "ok"}\n{"body": "wrong"}\n')
    err = load_error(p)
    assert "line 3" in err.reason and "'text'" in err.reason and "body" in err.reason


def test_jsonl_invalid_line_is_named(tmp_path: Path) -> None:
    err = load_error(write(tmp_path / "bad.jsonl", '{"text": "ok"}\n{"text": oops}\n'))
    assert err.reason.startswith("line 2: invalid JSON")


def test_jsonl_custom_fields(tmp_path: Path) -> None:
    p = write(tmp_path / "c.jsonl", '{"body": "hello", "id": "ignored"}\n')
    docs = load_file(p, "c.jsonl", json_text_field="body", json_id_field=None)
    assert docs[0].id == "c.jsonl#1"
    assert docs[0].text == "hello"
    assert docs[0].metadata["id"] == "ignored"


def test_json_list_and_single_object(tmp_path: Path) -> None:
    docs = load_file(write(tmp_path / "l.json", '[{"id": "x", "text": "one"}, {"text": "two"}]'), "l.json")
    assert [(d.id, d.text) for d in docs] == [("l.json#x", "one"), ("l.json#2", "two")]
    single = load_file(write(tmp_path / "s.json", '{"text": "solo", "n": 1}'), "s.json")
    assert [(d.id, d.text, d.metadata["n"]) for d in single] == [("s.json#1", "solo", 1)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"text": "a"}, 5]', "record 2: expected a JSON object, got int"),
        ('[{"text": "a"}, {"text": 3}]', "record 2: text field 'text' is int, not a string"),
        ('[{"id": 1, "text": "a"}, {"id": 1, "text": "b"}]', "record 2: duplicate id 'j.json#1'"),
        ("[]", "no records"),
        ('{"text": "a",}', "invalid JSON"),
    ],
)
def test_json_errors(tmp_path: Path, content: str, expected: str) -> None:
    assert expected in load_error(write(tmp_path / "j.json", content)).reason


# --------------------------------------------------------------------------- iter_files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for rel in [
        "README.md", "b.txt", "docs/guide.md", "docs/api/ref.html", "docs/img.png", "src/app.py",
        "src/Dockerfile", "data/x.jsonl", "notes.log", "drafts/wip.md", "node_modules/pkg/index.js",
        ".hidden.md", ".git/config.md", "docs/.cache/c.md",
    ]:  # fmt: skip
        write(root / rel, "content\n")
    return root


def test_iter_files_default_yields_supported_sorted(tree: Path) -> None:
    got = list(iter_files(tree))
    # node_modules/pkg/index.js is a site asset (.js), skipped by default since issue 14
    assert [rel for _, rel in got] == [
        "README.md", "b.txt", "data/x.jsonl", "docs/api/ref.html", "docs/guide.md", "drafts/wip.md",
        "src/Dockerfile", "src/app.py",
    ]  # fmt: skip
    for path, rel in got:
        assert path.is_absolute() and path == tree.resolve() / rel


def test_too_large_files_are_still_listed_so_load_file_can_report_them(tree: Path) -> None:
    assert rels(tree, max_file_bytes=1) == rels(tree)


def test_include_hidden(tree: Path) -> None:
    got = rels(tree, include_hidden=True)
    assert {".hidden.md", ".git/config.md", "docs/.cache/c.md"} <= set(got)


def test_include_pattern_without_slash_matches_names_anywhere(tree: Path) -> None:
    assert rels(tree, include=["*.md"]) == ["README.md", "docs/guide.md", "drafts/wip.md"]


def test_include_decides_and_unknown_suffix_loads(tree: Path) -> None:
    got = list(iter_files(tree, include=["*.log", "*.png"]))
    assert [rel for _, rel in got] == ["docs/img.png", "notes.log"]
    assert load_file(got[1][0], got[1][1])[0].text == "content\n"


def test_double_star_matches_zero_or_more_folders(tree: Path) -> None:
    write(tree / "other/docs/x.md", "x")
    assert rels(tree, include=["docs/**/*.md"]) == ["docs/guide.md"]
    assert rels(tree, include=["**/docs/*.md"]) == ["docs/guide.md", "other/docs/x.md"]
    assert rels(tree, include=["docs/**"]) == ["docs/api/ref.html", "docs/guide.md", "docs/img.png"]


def test_exclude_patterns_and_folder_pruning(tree: Path) -> None:
    got = rels(tree, exclude=["node_modules", "drafts/**", "*.txt", "docs/api/*"])
    assert got == ["README.md", "data/x.jsonl", "docs/guide.md", "src/Dockerfile", "src/app.py"]


def test_character_class_patterns(tree: Path) -> None:
    assert rels(tree, include=["[bR]*"]) == ["README.md", "b.txt"]
    assert rels(tree, include=["[!bR]*.md"]) == ["docs/guide.md", "drafts/wip.md"]


def test_odd_filenames(tmp_path: Path) -> None:
    names = ["my file.md", "naïve résumé.md", "quote's \"x\".txt", "日本語/文書.txt", "a[1].md"]
    for name in names:
        write(tmp_path / name, f"# {name}\n")
    got = list(iter_files(tmp_path))
    assert sorted(rel for _, rel in got) == sorted(names)
    for path, rel in got:
        doc = load_file(path, rel)[0]
        assert doc.id == rel and doc.text == f"# {rel}\n"


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no such directory"):
        list(iter_files(tmp_path / "missing"))
    with pytest.raises(LoadError, match="not a directory"):
        list(iter_files(write(tmp_path / "f.md", "x")))


symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


@symlinks
def test_symlinks_outside_root_are_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root / "in.md", "in")
    write(outside / "secret.md", "secret")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    (root / "outfile.md").symlink_to(outside / "secret.md")
    (root / "infile.md").symlink_to(root / "in.md")
    assert rels(root) == ["in.md", "infile.md"]


@symlinks
def test_symlink_loops_terminate(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "a/file.md", "x")
    (root / "a/back").symlink_to(root, target_is_directory=True)  # cycle through the root
    (root / "a/self").symlink_to(root / "a/self")  # a link to itself
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    assert rels(root) == ["a/file.md"]


@symlinks
def test_linked_folder_inside_root_is_walked_once_under_its_real_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "real/x.md", "x")
    write(root / ".store/y.md", "y")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    (root / "store").symlink_to(root / ".store", target_is_directory=True)
    assert rels(root) == ["real/x.md", "store/y.md"]


@pytest.mark.skipif(os.name == "nt", reason="needs POSIX permissions")
def test_unreadable_folder_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "ok.md", "x")
    locked = tmp_path / "locked"
    write(locked / "no.md", "x")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root with CAP_DAC_OVERRIDE reads it anyway
            pytest.skip("permissions are not enforced for this user")
        assert rels(tmp_path) == ["ok.md"]
    finally:
        locked.chmod(0o755)
    assert "unreadable folder" in caplog.text


def test_supported_suffixes() -> None:
    expected = {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".json", ".jsonl", ".py", ".pl"}
    assert expected <= SUPPORTED_SUFFIXES
    assert all(s.startswith(".") and s == s.lower() for s in SUPPORTED_SUFFIXES)
