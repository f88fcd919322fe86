"""A folder of hostile input for ``Index.sync``: every kind of file careless or malicious users leave around.

:func:`build_hostile_corpus` writes the folder and returns what it wrote, each file with the outcome a
sync must give it: ``"indexed"`` (a document whose ``source`` is the file), ``"failed"`` (in
``report.failed``, with a reason matching ``reason``), ``"either"`` (indexed or failed, both
acceptable) or ``"unlisted"`` (not a file a sync should even look at: links leaving the folder,
link loops, pipes, hidden or unsupported files). Anything the file system refuses to create (a
name some file systems reject) is left out of the corpus, so the expectations always describe the
files that really exist.

Sizes are chosen for ``max_file_bytes=1_000_000``: the deepest HTML (100,000 nested elements, 700 KB)
must fit under the cap and the huge file (2 MB) must not.

:func:`surrogate_jsonl` and :func:`non_utf8_name` make files that abort a whole sync in this version
of ragkit; they are kept out of the main corpus, so that the corpus test shows everything else, and
used by the strict ``xfail`` tests of ``tests/test_hostile.py`` that pin those bugs.
"""

from __future__ import annotations

import json
import os
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pdfutil import serialize_pdf

Outcome = Literal["indexed", "failed", "either", "unlisted"]

MAX_FILE_BYTES = 1_000_000
SECRET = "outsidesecretword"  # text of the files outside the root; must never reach the index


@dataclass(frozen=True)
class HostileFile:
    """One entry written into the corpus, and what a sync must make of it."""

    rel: str  # the relative path a folder walk yields (POSIX separators)
    expect: Outcome
    note: str
    reason: str | None = None  # a regex the failure reason must match (expect == "failed")


@dataclass
class HostileCorpus:
    root: Path
    outside: Path
    max_file_bytes: int
    files: list[HostileFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what this file system refused to create

    def expecting(self, *outcomes: Outcome) -> dict[str, HostileFile]:
        return {f.rel: f for f in self.files if f.expect in outcomes}

    @property
    def listed(self) -> set[str]:
        """Every path a sync must account for: indexed or reported as failed."""
        return set(self.expecting("indexed", "failed", "either"))


# --------------------------------------------------------------------------------------- PDFs


def _pdf(content: bytes, *, compress: bool) -> bytes:
    """A one-page PDF whose page content stream is ``content`` (optionally FlateDecode-compressed)."""
    stream = zlib.compress(content, 9) if compress else content
    flate = b" /Filter /FlateDecode" if compress else b""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Length %d%s >>\nstream\n" % (len(stream), flate) + stream + b"\nendstream",
    ]
    return serialize_pdf(objects)


def flate_bomb_pdf(path: Path, expanded_bytes: int = 100_000_000) -> Path:
    """A ~100 KB PDF whose content stream inflates to ``expanded_bytes`` of blanks (a zip bomb's shape)."""
    content = b"BT /F1 12 Tf 72 720 Td (flatebomb) Tj ET\n" + b" " * expanded_bytes
    path.write_bytes(_pdf(content, compress=True))
    return path


def text_bomb_pdf(path: Path, characters: int) -> Path:
    """A tiny PDF (~1 KB per MB of text) whose one text operator shows ``characters`` letters.

    pypdf inflates streams up to 75 MB, so up to that size the whole text comes out of the loader.
    """
    content = b"BT /F1 12 Tf 72 720 Td (" + b"A" * characters + b") Tj ET\n"
    path.write_bytes(_pdf(content, compress=True))
    return path


# ------------------------------------------------------------------------------------ corpus


def build_hostile_corpus(base: Path, *, max_file_bytes: int = MAX_FILE_BYTES, seed: int = 7) -> HostileCorpus:
    """Write the hostile folder ``base/root`` (and ``base/outside``, which links point to)."""
    rng = random.Random(seed)
    corpus = HostileCorpus(base / "root", base / "outside", max_file_bytes)
    root = corpus.root
    root.mkdir(parents=True)
    corpus.outside.mkdir()
    (corpus.outside / "secret.md").write_text(f"# Secret\n\n{SECRET} must stay outside.\n", encoding="utf-8")

    def add(rel: str, content: bytes | str, expect: Outcome, note: str, reason: str | None = None) -> None:
        path = root / rel
        data = content.encode("utf-8") if isinstance(content, str) else content
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (OSError, UnicodeEncodeError) as exc:
            corpus.skipped.append(f"{rel!r}: {exc}")
            return
        corpus.files.append(HostileFile(rel, expect, note, reason))

    def link(rel: str, target: Path | str, note: str, *, directory: bool = False) -> None:
        try:
            (root / rel).symlink_to(target, target_is_directory=directory)
        except OSError as exc:
            corpus.skipped.append(f"{rel!r}: {exc}")
            return
        corpus.files.append(HostileFile(rel, "unlisted", note))

    # Size: over the cap, and PDFs that expand far beyond it.
    add("huge.txt", ("bee " * 250 + "\n") * (2 * max_file_bytes // 1001 + 1), "failed", "2 MB, over the cap",
        r"too large")
    bomb = root / "flatebomb.pdf"
    flate_bomb_pdf(bomb)
    corpus.files.append(HostileFile("flatebomb.pdf", "either", "100 KB PDF whose stream inflates to 100 MB"))

    # Structure: deep nesting, very long lines, very long words.
    depth = 100_000
    nested = "<i>" * depth + "deepnestedword inside" + "</i>" * depth
    add("deep.html", f"<html><body>{nested}</body></html>", "indexed", f"{depth} nested elements")
    add("long_line.txt", "swarm hive comb nectar " * 6_500, "indexed", "one 150 KB line of words")
    add("long_word.md", "a" * 150_000, "indexed", "one 150 KB word")
    add("cjk_line.txt", "蜜蜂巣箱" * 12_500, "indexed", "one 150 KB line of CJK without spaces")
    add("many_lines.md", "x\n" * 75_000, "indexed", "75,000 one-letter lines")

    # Encodings: control characters survive as text, invalid UTF-8 is refused.
    controls = "".join(chr(c) for c in [*range(0, 9), *range(11, 32), 127, *range(0x80, 0xA0)] if c != 0)
    invisible = "\u200b\u200d\ufeff\u202e\u2066"
    add("controls.md", f"# Controls\n\ncontrolword {controls} {invisible} end\r\nnext\rline\n", "indexed",
        "every C0/C1 control, zero-widths, bidi overrides, CR and CRLF")
    add("nul_late.txt", "nulword " * 2000 + "\x00 after the sniff window", "indexed", "a NUL after 8 KB")
    add("lone_surrogate.txt", b"surrogate \xed\xa0\x80 bytes", "failed", "a lone surrogate in UTF-8 form",
        r"not valid UTF-8")
    add("invalid_utf8.md", b"# Bad\n\nbroken \xff\xfe\xc3( bytes\n", "failed", "bad UTF-8", r"not valid UTF")
    add("overlong.txt", b"overlong \xc0\xaf slash", "failed", "an overlong UTF-8 encoding", r"not valid UTF")
    add("utf16.txt", "utf sixteen text".encode("utf-16"), "failed", "UTF-16 (NUL bytes)", r"binary")
    add("bom_only.md", b"\xef\xbb\xbf", "failed", "nothing but a BOM", r"empty")

    # Empty, blank and binary files.
    add("empty.txt", b"", "failed", "0 bytes", r"empty")
    add("blank.md", " \n\t\r\n\x0b\x0c  \n", "failed", "only whitespace", r"empty")
    noise = bytes(rng.randrange(256) for _ in range(4096))
    add("binary.txt", noise + b"\x00", "failed", "random bytes", r".")
    add("zeros.md", b"\x00" * 10_000, "failed", "NUL bytes", r"binary")
    add("random.pdf", bytes(rng.randrange(256) for _ in range(2048)), "failed", "no PDF header", r"not a PDF")
    add("header_only.pdf", b"%PDF-1.7\n" + bytes(rng.randrange(256) for _ in range(2048)), "failed",
        "a PDF header and garbage", r"PDF")
    add("empty_list.json", "[]", "failed", "no records", r"no records")
    add("not_object.json", "[1, 2, 3]", "failed", "records that are not objects", r"JSON object")
    add("deep.json", "[" * 100_000 + "]" * 100_000, "failed", "100,000 nested arrays", r".")
    add("text_not_string.jsonl", '{"text": {"nested": true}}\n', "failed", "a text field that is an object",
        r"not a string")

    # Document ids: duplicates inside a file, the same ids in two files, and a collision across files.
    records = [{"id": i, "text": f"jsonrecord {i} about hives"} for i in (1, 2, 3)]
    same = "\n".join(json.dumps(r) for r in records) + "\n"
    add("same_ids_1.jsonl", same, "indexed", "ids 1-3 (prefixed by the file: no clash)")
    add("same_ids_2.jsonl", same, "indexed", "the same ids 1-3 in another file")
    add("dup_within.jsonl", '{"id": 1, "text": "one"}\n{"id": "1", "text": "uno"}\n', "failed",
        "ids 1 and '1' in one file", r"duplicate id")
    add("coll.jsonl", json.dumps({"id": "x.md", "text": "collision record text"}) + "\n", "indexed",
        "record id 'coll.jsonl#x.md'")
    add("coll.jsonl#x.md", "# Collision\n\nfile whose id equals a record's id\n", "failed",
        "a file named like another file's record id", r"duplicate document id")
    add("weird_ids.jsonl", "\n".join(json.dumps(r) for r in [
        {"id": "../../etc/passwd", "text": "dotdot id"}, {"id": "new\nline", "text": "newline id"},
        {"id": None, "text": "null id"}, {"id": [1, 2], "text": "list id"}, {"id": "", "text": "empty id"},
    ]) + "\n", "indexed", "ids with '..', a newline, null, a list and ''")

    # Names: spaces, quotes, newline, emoji, right-to-left text, look-alike normal forms, glob characters.
    names = [
        "with space.md", "quote's \"double\".md", "new\nline.md", "tab\tname.md", "emoji 🐝🍯.md",
        "עברית שלום.md", "العربية.md", "\u202eevil\u202c.md", "back\\slash.md", "-leading-dash.md",
        "caf\u00e9.md", "cafe\u0301.md", "star*q?[x].md", "percent%20hash#.md", "colon:semi;.md",
        "trailing space .md", "ＦＵＬＬ.md", "x" * 200 + ".md",
    ]
    for n, name in enumerate(names):
        add(name, f"# Name {n}\n\noddnameword{n} in a file with an odd name\n", "indexed", f"name {name!r}")
    deep = "/".join(f"d{i}" for i in range(100))
    add(f"{deep}/bottom.md", "# Bottom\n\ndeepfolderword at the bottom of 100 folders\n", "indexed",
        "100 nested folders")

    # Links: loops, a link to itself, links leaving the root, a link to a file inside.
    link("loop_dir", root, "a link to the root (a cycle)", directory=True)
    link("self.md", root / "self.md", "a link to itself")
    link("ping.md", root / "pong.md", "a two-link loop")
    link("pong.md", root / "ping.md", "a two-link loop")
    link("leak.md", corpus.outside / "secret.md", "a link to a file outside the root")
    link("leak_dir", corpus.outside, "a link to a folder outside the root", directory=True)
    link("dangling.md", root / "missing.md", "a link to nothing")
    link("inner_link.md", root / "with space.md", "a link to a file inside")
    # A link inside the root is followed, so this one is a file the sync must account for.
    corpus.files[-1] = HostileFile("inner_link.md", "indexed", "a link to a file inside")

    # Things that are not regular files, or not candidates.
    try:
        os.mkfifo(root / "pipe.md")  # reading it would block forever
        corpus.files.append(HostileFile("pipe.md", "unlisted", "a named pipe"))
    except (OSError, AttributeError) as exc:
        corpus.skipped.append(f"pipe.md: {exc}")
    (root / "folder.md").mkdir()
    corpus.files.append(HostileFile("folder.md", "unlisted", "a folder with a file suffix"))
    add(".hidden.md", "hidden words", "unlisted", "a hidden file")
    add("data.bin", b"\x00\x01binary", "unlisted", "an unsupported suffix")
    add("ok.md", "# Fine\n\nplainfineword an ordinary file among hostile ones\n", "indexed", "a normal file")
    return corpus


# ---------------------------------------------------------------------- files that abort a sync


def surrogate_jsonl(root: Path) -> str:
    """A JSONL record whose text holds an escaped lone surrogate: valid JSON, not encodable UTF-8."""
    (root / "surrogate.jsonl").write_text('{"id": 1, "text": "lone \\ud800 surrogate"}\n', encoding="utf-8")
    return "surrogate.jsonl"


def non_utf8_name(root: Path) -> str:
    """A file whose name is not valid UTF-8 (Python sees it as a surrogate escape)."""
    name = os.fsdecode(b"latin1 caf\xe9.md")
    (root / name).write_text("# Latin-1 name\n\nlatinnameword\n", encoding="utf-8")
    return name

