"""Issue 18's formats end to end: a folder with one file of each, synced into a real index (fake
embedder: the loaders are under test, not the model); a phrase unique to each file is found, with
its page, slide or sheet in the hit's metadata; OCR reads only pages without a text layer."""

from __future__ import annotations

import importlib.util
import io
import shutil
import zipfile
from pathlib import Path

import pytest
from fakes import open_fake_index
from pdfutil import make_pdf

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("docx")
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")


def samples_module():
    spec = importlib.util.spec_from_file_location("make_office_samples", ROOT / "samples" / "make_office_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scanned_page_pdf(lines: list[str]) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", (1240, 1754), 255)  # A4 at 150 dpi
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((100, 150 + i * 70), line, fill=0, font=ImageFont.load_default(size=40))
    out = io.BytesIO()
    page.save(out, "PDF", resolution=150.0)
    return out.getvalue()


def mixed_pdf(path: Path) -> None:
    """Page 1 has a text layer; page 2 is a picture of text."""
    import pypdf

    text_pdf = path.with_suffix(".text.pdf")
    make_pdf(text_pdf, ["Page one explains the uncapping fork for extraction days."])
    writer = pypdf.PdfWriter()
    writer.append(pypdf.PdfReader(text_pdf))
    writer.append(pypdf.PdfReader(io.BytesIO(scanned_page_pdf(["Ivy honey sets hard within weeks"]))))
    writer.write(path)
    text_pdf.unlink()


def write_others(folder: Path) -> None:
    from ebooklib import epub
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    book = epub.EpubBook()
    book.set_identifier("bees-1")
    book.set_title("The bee book")
    chapter = epub.EpubHtml(title="Propolis", file_name="c1.xhtml")
    chapter.content = "<html><body><h1>Propolis</h1><p>Propolis seals every crack in the hive.</p></body></html>"
    book.add_item(chapter)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [chapter]
    epub.write_epub(str(folder / "book.epub"), book)
    odt = OpenDocumentText()
    odt.text.addElement(H(outlinelevel=1, text="Nucleus colonies"))
    odt.text.addElement(P(text="A nucleus overwinters on five frames."))
    odt.save(str(folder / "nuc.odt"))
    (folder / "letter.rtf").write_bytes(rb"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0 Drone congregation areas are "
                                        rb"remembered for years.\par}")
    (folder / "note.eml").write_bytes(b"From: club@example.org\r\nSubject: Meeting on foundation\r\n"
                                      b"Date: Mon, 6 May 2024 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n"
                                      b"Bring a sheet of wired foundation to the meeting.\r\n")
    (folder / "stock.csv").write_text("Item,Count\nSmoker fuel bags,14\nSpare queen excluders,3\n")
    (folder / "feed.tsv").write_text("Month\tSyrup\nSeptember\tthick two-to-one syrup\n")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = tmp_path_factory.mktemp("office")
    make = samples_module()
    make.write_docx(docs / "record.docx")
    make.write_pptx(docs / "queens.pptx")
    make.write_xlsx(docs / "records.xlsx")
    make.write_scanned_pdf(docs / "letter.pdf")
    mixed_pdf(docs / "mixed.pdf")
    write_others(docs)
    return docs


@pytest.fixture(scope="module")
def synced(folder: Path, tmp_path_factory: pytest.TempPathFactory):
    index = open_fake_index(tmp_path_factory.mktemp("kb") / "kb.ragkit")
    report = index.sync(folder)
    yield index, report
    index.close()


def top(index, query: str) -> dict:
    hit = index.search(query, k=1, mode="bm25")[0]
    return {"source": hit.source, "text": hit.text, **hit.metadata}


def test_every_format_is_indexed(synced) -> None:
    _, report = synced
    assert not report.failed, report.failed
    expected = {"record.docx", "queens.pptx", "records.xlsx", "mixed.pdf", "book.epub", "nuc.odt", "letter.rtf",
                "note.eml", "stock.csv", "feed.tsv"}
    assert expected <= set(report.added) | (set() if shutil.which("tesseract") is None else {"letter.pdf"})


def test_word_headings_and_tables_come_through(synced) -> None:
    hit = top(synced[0], "sunken cappings foulbrood")
    assert hit["source"] == "record.docx" and hit["headings"] == ["Apiary inspection record", "What to record"]
    hit = top(synced[0], "artificial swarm frame 4")
    assert "| Hive 3 | 19 April | 9 | yes |" in hit["text"] and hit["type"] == "docx"


def test_a_slide_hit_has_its_slide_number_and_the_speaker_notes(synced) -> None:
    hit = top(synced[0], "grafting tools first season")
    assert hit["source"] == "queens.pptx" and hit["slide"] == 2 and "Speaker notes:" in hit["text"]


def test_a_sheet_hit_has_its_sheet_name(synced) -> None:
    hit = top(synced[0], "formic acid strips mite drop")
    assert hit["source"] == "records.xlsx" and hit["sheet"] == "Varroa treatments"
    assert "| Hive | Date | Treatment | Mite drop per day |" in hit["text"]
    assert top(synced[0], "spare queen excluders")["sheet"] == "stock"


@pytest.mark.parametrize(("query", "source"), [
    ("propolis seals every crack", "book.epub"), ("nucleus overwinters five frames", "nuc.odt"),
    ("drone congregation areas", "letter.rtf"), ("wired foundation meeting", "note.eml"),
    ("thick syrup September", "feed.tsv"),
])
def test_other_formats_are_found(synced, query: str, source: str) -> None:
    assert top(synced[0], query)["source"] == source


@needs_tesseract
def test_a_scanned_pdf_is_read_by_ocr_and_the_report_says_so(synced) -> None:
    hit = top(synced[0], "never spray a swarm with water")
    assert hit["source"] == "letter.pdf" and hit["page"] == 1 and hit["ocr_pages"] == [1]
    assert "letter.pdf: OCR'd page 1" in synced[1].notes and "mixed.pdf: OCR'd page 2" in synced[1].notes


@needs_tesseract
def test_only_the_page_without_a_text_layer_is_ocrd(synced) -> None:
    hit = top(synced[0], "ivy honey sets hard")
    assert hit["source"] == "mixed.pdf" and hit["page_end"] == 2 and hit["ocr_pages"] == [2]  # not page 1
    assert "Ivy honey sets hard" in hit["text"] and top(synced[0], "uncapping fork extraction")["page"] == 1


def test_without_the_extra_a_file_is_reported_with_the_extra_to_install(folder: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ragkit.ingest.limits import ParseLimits
    from ragkit.ingest.worker import load_bounded

    monkeypatch.setitem(sys.modules, "pptx", None)  # import pptx now fails, as without ragkit[docs]
    from ragkit.errors import LoadError

    with pytest.raises(LoadError, match=r"needs ragkit\[docs\]: pip install 'ragkit\[docs\]' \(python-pptx"):
        load_bounded((folder / "queens.pptx").read_bytes(), "queens.pptx", "queens.pptx",
                     ParseLimits(seconds=None, memory_bytes=None))


def test_a_docx_that_is_not_a_zip_is_reported(tmp_path: Path) -> None:
    from ragkit.errors import LoadError
    from ragkit.ingest.loading import load_bytes

    with pytest.raises(LoadError, match="damaged or truncated zip"):
        load_bytes(b"PK\x03\x04 not really", "x.docx")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("word/document.xml", "<nope/>")
    with pytest.raises(LoadError, match="cannot read Word file"):
        load_bytes(buf.getvalue(), "y.docx")


def test_a_question_about_one_cell_of_a_200_row_sheet_finds_its_row_under_the_header(tmp_path: Path) -> None:
    import openpyxl

    docs = tmp_path / "docs"
    docs.mkdir()
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Colonies"
    sheet.append(["Hive", "Apiary", "Queen marking colour", "Varroa count"])
    colours = ["white", "yellow", "red", "green", "blue"]
    for i in range(1, 201):
        sheet.append([f"H-{i:03d}", f"Orchard {i % 9}", colours[i % 5], (i * 37) % 101])
    sheet.cell(row=151, column=3, value="violet")  # hive H-150: the one cell asked about
    book.save(docs / "colonies.xlsx")
    with open_fake_index(tmp_path / "kb") as index:
        assert index.sync(docs).added == ("colonies.xlsx",)
        assert len(index) > 5  # the table is spread over many chunks
        hit = index.search("which hive has a violet queen marking colour", k=1, mode="bm25")[0]
    header = "| Hive | Apiary | Queen marking colour | Varroa count |\n| --- | --- | --- | --- |"
    assert "| H-150 | Orchard 6 | violet |" in hit.text and hit.metadata["sheet"] == "Colonies"
    assert hit.text.startswith(header) or hit.metadata["table_header"] == header
    from ragkit.prompting.builder import PromptBuilder

    passage = PromptBuilder("qa", min_score=None).build("which hive has a violet queen marking colour?", [hit])
    assert passage.citations[1].text.startswith(header) and "| H-150 | Orchard 6 | violet |" in passage.text


@needs_tesseract
def test_images_are_read_by_ocr_once_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from ragkit.ingest import registry

    monkeypatch.setattr(registry, "_registry", {})
    monkeypatch.setattr(registry, "_overrides", {})
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    docs = tmp_path / "docs"
    docs.mkdir()
    image = Image.new("L", (900, 200), 255)
    ImageDraw.Draw(image).text((40, 60), "Queen excluder stored in the shed", fill=0,
                               font=ImageFont.load_default(size=40))
    image.save(docs / "label.png")
    with open_fake_index(tmp_path / "kb") as index:
        report = index.sync(docs)
        assert "label.png" not in report.added  # an image is not read unless asked for
        registry.enable_image_ocr()
        report = index.sync(docs)
        assert report.added == ("label.png",) and "label.png: read by OCR" in report.notes
        hit = index.search("queen excluder shed", k=1, mode="bm25")[0]
    assert hit.source == "label.png" and hit.metadata["page"] == 1 and hit.metadata["type"] == "image"
