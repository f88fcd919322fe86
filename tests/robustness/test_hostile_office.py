"""Hostile variants of issue 18's formats: each is reported (or indexed with a note), within its
limits, the next file is indexed, and a previously indexed version is kept."""

from __future__ import annotations

import io
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from fakes import open_fake_index
from hostile import _pdf
from pdfutil import make_pdf

pytest.importorskip("docx")
pytest.importorskip("openpyxl")


def good_docx(path: Path, phrase: str) -> None:
    import docx

    doc = docx.Document()
    doc.add_heading("Smoker fuel", 1)
    doc.add_paragraph(phrase)
    doc.save(path)


def zip_bomb(path: Path, inflated: int = 600_000_000) -> None:
    """A ~600 KB zip whose one member inflates to 600 MB of zeros, named like a Word file."""
    block = bytes(1 << 22)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z, \
            z.open("word/document.xml", "w", force_zip64=True) as f:
        for _ in range(inflated // len(block)):
            f.write(block)


def million_empty_rows(path: Path) -> None:
    """A workbook whose sheet says A1:Z1000001 and holds a million empty rows between two real ones."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["Hive", "Note"])
    book.active.append(["Hive 7", "bramble honey"])
    buf = io.BytesIO()
    book.save(buf)
    rows = "".join(f'<row r="{i}"/>' for i in range(3, 1_000_003))
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                text = text.replace('<dimension ref="A1:B2"/>', '<dimension ref="A1:Z1000003"/>')
                text = text.replace("</sheetData>", rows + '<row r="1000003"><c r="A1000003" t="inlineStr">'
                                    "<is><t>after the gap</t></is></c></row></sheetData>")
                data = text.encode()
            out.writestr(info, data)


def scanned_pdf(path: Path, pages: int) -> None:
    from PIL import Image, ImageDraw, ImageFont

    images = []
    for n in range(pages):
        page = Image.new("L", (850, 1100), 255)
        ImageDraw.Draw(page).text((80, 100), f"Scanned page {n + 1} about drone brood", fill=0,
                                  font=ImageFont.load_default(size=36))
        images.append(page)
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=100.0)


def sync(folder: Path, index_path: Path, **limits):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with open_fake_index(index_path) as index:
        report = index.sync(folder, **limits)
        found = {h.source for h in index.search("bellows cardboard smoke", k=5, mode="bm25")}
    return report, {f.path: f.reason for f in report.failed}, found, time.perf_counter() - started


def test_a_truncated_or_bomb_docx_is_reported_and_the_indexed_version_kept(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    good_docx(docs / "fuel.docx", "Cardboard gives cool smoke; work the bellows gently.")
    good_docx(docs / "bomb.docx", "Pine needles burn long.")
    report, failed, found, _ = sync(docs, tmp_path / "kb")
    assert not failed and "fuel.docx" in found

    data = (docs / "fuel.docx").read_bytes()
    (docs / "fuel.docx").write_bytes(data[: len(data) // 2])  # truncated: a copy that stopped halfway
    zip_bomb(docs / "bomb.docx")
    (docs / "next.md").write_text("# Next\n\nthe next file is indexed\n")
    report, failed, found, seconds = sync(docs, tmp_path / "kb")
    assert "damaged or truncated zip" in failed["fuel.docx"]
    assert "too complex" in failed["bomb.docx"] and "zip bomb" in failed["bomb.docx"]
    assert "next.md" in report.added and "fuel.docx" in found  # the old version still answers
    assert seconds < 20, seconds


def test_an_xlsx_with_a_million_empty_rows_is_indexed_with_a_note(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    million_empty_rows(docs / "gaps.xlsx")
    report, failed, _, seconds = sync(docs, tmp_path / "kb", parse_memory=1_000_000_000)
    assert not failed and report.added == ("gaps.xlsx",)
    assert any("gaps.xlsx: sheet 'Sheet': stopped after 10000 empty rows" in n for n in report.notes), report.notes
    with open_fake_index(tmp_path / "kb") as index:
        assert "| Hive 7 | bramble honey |" in index.search("bramble honey", k=1, mode="bm25")[0].text
    assert seconds < 20, seconds


def test_a_slow_page_is_skipped_with_its_number_and_the_rest_indexed(tmp_path: Path) -> None:
    import pypdf

    docs = tmp_path / "docs"
    docs.mkdir()
    slow = b"BT /F1 12 Tf 72 720 Td " + b"(a) Tj 0 -1 Td " * 200_000 + b"ET\n"  # seconds of pypdf per page
    make_pdf(tmp_path / "text.pdf", ["Bellows and cardboard make smoke."])
    writer = pypdf.PdfWriter()
    writer.append(pypdf.PdfReader(io.BytesIO(_pdf(slow, compress=True))))
    writer.append(pypdf.PdfReader(tmp_path / "text.pdf"))
    writer.write(docs / "two.pdf")
    report, failed, found, _ = sync(docs, tmp_path / "kb", page_seconds=1)
    assert not failed and "two.pdf" in found
    assert any(n.startswith("two.pdf: page 1 skipped: took over 1 s") for n in report.notes), report.notes


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")
def test_a_100_page_scan_is_bounded_by_the_time_limit(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fuel.md").write_text("# Fuel\n\nCardboard and bellows smoke.\n")
    sync(docs, tmp_path / "kb")
    scanned_pdf(docs / "scan.pdf", 100)
    _, failed, found, seconds = sync(docs, tmp_path / "kb", parse_seconds=4, parse_memory=1_000_000_000)
    assert "too complex" in failed["scan.pdf"] and "parse_seconds" in failed["scan.pdf"]
    assert "fuel.md" in found and seconds < 12, seconds
