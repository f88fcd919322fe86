"""Bounded cost per file (issue 19, part 2): a file of one-character tokens chunks in memory
proportional to a chunk, text over ``max_chars`` is reported, PDFs expensive to extract are reported
as "too complex" within the per-file limit, and the sync goes on to the next file. And (issue 14,
bug 1) a PDF line starting with "#" is text, not a Markdown heading."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from fakes import FakeEmbedder
from hostile import _pdf
from pdfutil import make_pdf

import ragkit
from ragkit.ingest.chunking import Chunker
from ragkit.ingest.loading import load_file

MEMORY_CAP_MB = 1024

CHUNK_CHILD = r"""
import json, sys
from ragkit.ingest.chunking import Chunker
from ragkit.text.tokens import resolve_token_counter
from ragkit.types import Document
counter = resolve_token_counter("sentence-transformers/all-MiniLM-L6-v2")  # the default model's tokenizer
chunks = Chunker(count_tokens=counter).split(Document("x.txt", "x-" * 4_000_000))
ok = all(counter(c.text) <= 256 for c in chunks[:50]) and "".join(c.text for c in chunks) == "x-" * 4_000_000
# VmHWM: this process's own peak. (ru_maxrss is not: Linux carries the parent's peak across exec, so
# under a pytest that had loaded the model it read 1.1 GB for a child that never used 100 MB.)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"chunks": len(chunks), "ok": ok, "maxrss_mb": peak_kb / 1024}))
"""


def test_an_8_mb_file_of_one_character_tokens_chunks_under_1_gb() -> None:
    child = subprocess.run([sys.executable, "-c", CHUNK_CHILD], capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"\n8 MB 'x-' file: {result}")
    assert result["ok"] and result["chunks"] > 10_000
    assert result["maxrss_mb"] < MEMORY_CAP_MB  # 4.4 GB before: the tokenizer was given the whole line


def _slow_page(operators: int) -> bytes:
    # pypdf's extraction is superlinear in a page's text operators: ~1 KB compressed, seconds to extract.
    return b"BT /F1 12 Tf 72 720 Td " + b"(a) Tj 0 -1 Td " * operators + b"ET\n"


def _sync(root: Path, index_dir: Path, **limits: object) -> tuple[ragkit.SyncReport, float]:
    started = time.perf_counter()
    with ragkit.Index(index_dir, embedder=FakeEmbedder(), show_progress=False) as index:
        report = index.sync(root, **limits)
    return report, time.perf_counter() - started


def test_pdfs_expensive_to_extract_are_too_complex_and_the_sync_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a_slow_page.pdf").write_bytes(_pdf(_slow_page(200_000), compress=True))  # ~30 s unbounded
    (root / "b_next.md").write_text("# Next\n\nnextfileword after the slow ones\n", encoding="utf-8")
    report, seconds = _sync(root, tmp_path / "index", parse_seconds=20, page_seconds=1)
    failed = {f.path: f.reason for f in report.failed}
    assert "too complex" in failed["a_slow_page.pdf"] and "page 1" in failed["a_slow_page.pdf"]
    assert "b_next.md" in report.added
    assert seconds < 10, seconds

    (root / "a_slow_page.pdf").unlink()
    (root / "c_slow_file.pdf").write_bytes(_pdf(_slow_page(200_000), compress=True))
    report, seconds = _sync(root, tmp_path / "index2", parse_seconds=2, page_seconds=None)
    failed = {f.path: f.reason for f in report.failed}
    assert "too complex" in failed["c_slow_file.pdf"] and "parse_seconds" in failed["c_slow_file.pdf"]
    assert "b_next.md" in report.added
    assert seconds < 8, seconds


def test_text_over_max_chars_is_reported_and_the_sync_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "big.txt").write_text("x-" * 600_000, encoding="utf-8")
    (root / "ok.md").write_text("# Fine\n\nplainfineword\n", encoding="utf-8")
    report, _ = _sync(root, tmp_path / "index", max_chars=1_000_000)
    failed = {f.path: f.reason for f in report.failed}
    assert "text too long" in failed["big.txt"] and "max_chars" in failed["big.txt"]
    assert report.added == ("ok.md",)


def test_a_pdf_line_starting_with_a_hash_is_not_a_heading(tmp_path: Path) -> None:
    code = "# update-mime-database command. DO NOT EDIT!\nmimetype text/plain"
    pdf = make_pdf(tmp_path / "manual.pdf", ["Installing the package", code, *[f"page {n} text" for n in range(10)]])
    (doc,) = load_file(pdf, "manual.pdf")
    chunks = Chunker(chunk_size=16, overlap=0).split(doc)
    assert len(chunks) > 1
    assert all(c.metadata["headings"] == [] for c in chunks), [c.metadata["headings"] for c in chunks]
    assert any("update-mime-database" in c.text for c in chunks)  # the line is kept, as text
