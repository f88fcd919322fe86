"""A ruled table on a PDF page becomes Markdown rows (pdfplumber, ``ragkit[docs]``); the page's other
text, pages without tables, and PDFs read without pdfplumber stay pypdf's text."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import open_fake_index
from pdfutil import _escape, make_pdf, serialize_pdf

from ragkit.ingest.formats import pdf_tables
from ragkit.ingest.formats.pdf import load_pdf
from ragkit.ingest.formats.pdf_tables import PdfTables
from ragkit.ingest.limits import TimeLimitExceeded
from ragkit.ingest.loading import load_file
from ragkit.ingest.registry import LoadContext

pytest.importorskip("pdfplumber")

ROWS = [("Hive", "Queen colour"), ("Hive 7", "blue"), ("Hive 12", "white"), ("Hive 31", "green")]
HEADER = "| Hive | Queen colour |\n| --- | --- |"
INTRO, AFTER = "Hive inspection log, spring", "Inspect every hive weekly."


def _table_page(rows: list[tuple[str, str]], x0: int = 72, top: int = 700, col: int = 160, row_h: int = 20) -> bytes:
    """A content stream: a line of text, a table ruled with ``re``/``l`` + ``S``, a line of text."""
    width, height = col * len(rows[0]), row_h * len(rows)
    ops = [b"BT /F1 12 Tf 72 740 Td (%s) Tj ET" % _escape(INTRO), b"0.5 w",
           b"%d %d %d %d re S" % (x0, top - height, width, height)]
    ops += [b"%d %d m %d %d l S" % (x0, top - i * row_h, x0 + width, top - i * row_h) for i in range(1, len(rows))]
    ops += [b"%d %d m %d %d l S" % (x0 + j * col, top, x0 + j * col, top - height) for j in range(1, len(rows[0]))]
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            ops.append(b"BT /F1 11 Tf %d %d Td (%s) Tj ET" % (x0 + j * col + 4, top - (i + 1) * row_h + 6, _escape(cell)))
    ops.append(b"BT /F1 12 Tf 72 %d Td (%s) Tj ET" % (top - height - 30, _escape(AFTER)))
    return b"\n".join(ops) + b"\n"


def table_pdf(path: Path) -> Path:
    """Two pages: plain text, then the ruled table between two lines of text."""
    first = b"BT /F1 12 Tf 72 720 Td (Spring checks come first.) Tj ET\n"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R 6 0 R] /Count 2 >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    for page_id, stream in ((4, first), (6, _table_page(ROWS))):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1))
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream")
    path.write_bytes(serialize_pdf(objects))
    return path


def load(path: Path) -> tuple[str, dict]:
    (doc,) = load_file(path, path.name)
    return doc.text, dict(doc.metadata)


def test_a_ruled_table_becomes_markdown_rows_in_place_of_its_words(tmp_path: Path) -> None:
    text, meta = load(table_pdf(tmp_path / "log.pdf"))
    table = HEADER + "\n| Hive 7 | blue |\n| Hive 12 | white |\n| Hive 31 | green |"
    page_two = f"{INTRO}\n\n{table}\n\n{AFTER}"
    assert text == "Spring checks come first.\n\n" + page_two  # each cell once: no word soup beside the rows
    assert meta["pages"] == [[0, 1], [text.index(INTRO), 2]]


def test_a_synced_table_pdf_has_a_chunk_with_the_header_and_the_row(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    table_pdf(docs / "log.pdf")
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        assert not index.sync(docs).failed
        hits = index.search("Hive 12 queen colour", mode="bm25")
    hit = next(h for h in hits if "| Hive 12 | white |" in h.text)
    assert HEADER.split("\n")[0] in hit.text and hit.metadata["page"] <= 2 == hit.metadata["page_end"]


def test_a_pdf_without_tables_reads_exactly_as_without_pdfplumber(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_pdf(tmp_path / "plain.pdf", ["Page one text\nsecond line", "Page (two)\n| not | a table |"], title="R")
    with_tables = load(path)
    monkeypatch.setattr(PdfTables, "available", staticmethod(lambda: False))
    assert load(path) == with_tables


def test_without_pdfplumber_a_table_reads_as_pypdf_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PdfTables, "available", staticmethod(lambda: False))
    text, _ = load(table_pdf(tmp_path / "log.pdf"))
    assert "|" not in text and "Hive 12 white" in text


def test_a_page_over_the_character_bound_keeps_pypdf_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_tables, "PDF_TABLE_MAX_CHARS", 20)
    text, _ = load(table_pdf(tmp_path / "log.pdf"))
    assert "|" not in text and "Hive 12 white" in text


@pytest.mark.parametrize("failure", [TimeLimitExceeded, ValueError])
def test_table_finding_that_runs_out_of_time_or_fails_keeps_the_page_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]) -> None:
    def fail(self: PdfTables, number: int, page: object, chars: int) -> str:
        raise failure("boom")

    monkeypatch.setattr(PdfTables, "page_text", fail)
    text, meta = load(table_pdf(tmp_path / "log.pdf"))
    assert "Hive 12 white" in text and meta["pages"][1][1] == 2
    timed_out = ["pages 1-2: tables read as plain text (over page_seconds)"]
    assert meta.get("notes", []) == (timed_out if failure is TimeLimitExceeded else [])


def test_pages_that_draw_no_lines_are_not_laid_out_by_pdfplumber(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    monkeypatch.setattr(PdfTables, "_open", lambda self: opened.append(1))
    load(make_pdf(tmp_path / "plain.pdf", ["Page one text", "Page two text"]))
    assert opened == []  # a text page costs a scan of its content stream, not pdfminer's layout
    load(table_pdf(tmp_path / "log.pdf"))
    assert opened == [1]  # only the ruled page


def _grid_pdf(path: Path, lines: int) -> Path:
    """A page of text over an empty ruled grid: cheap for pypdf, costly for table finding (120 lines
    each way: 13 s unbounded here)."""
    step = 500 / lines
    ops = [b"BT /F1 12 Tf 72 740 Td (Graph paper page) Tj ET", b"0.1 w"]
    ops += [b"50 %.2f m 550 %.2f l S" % (100 + i * step, 100 + i * step) for i in range(lines + 1)]
    ops += [b"%.2f 100 m %.2f 600 l S" % (50 + i * step, 50 + i * step) for i in range(lines + 1)]
    stream = b"\n".join(ops) + b"\n"
    path.write_bytes(serialize_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream"]))
    return path


def test_an_empty_grid_is_not_a_table(tmp_path: Path) -> None:
    assert load(_grid_pdf(tmp_path / "grid.pdf", 6))[0] == "Graph paper page"


def test_table_finding_stays_within_page_seconds_and_keeps_the_text(tmp_path: Path) -> None:
    data = _grid_pdf(tmp_path / "grid.pdf", 120).read_bytes()
    started = time.perf_counter()
    (doc,) = load_pdf(data, LoadContext("grid.pdf", "grid.pdf", "pdf", page_seconds=1.0))
    assert time.perf_counter() - started < 3
    assert doc.text == "Graph paper page"
    assert doc.metadata["notes"] == ["page 1: tables read as plain text (over page_seconds)"]
