"""PDF: the text layer page by page with pypdf, scanned pages by OCR, bookmarks as headings.

A page that takes over ``page_seconds`` to extract, or that fails to parse, is skipped and named in
the document's notes (the sync report shows them); the rest of the PDF is indexed. A page without a
text layer is read by OCR (:mod:`ragkit.ingest.formats.ocr`) when ``ragkit[ocr]`` is installed;
pages with text are never OCR'd. Page numbers are kept: ``pages`` metadata ``[offset, page]``.
With ``ragkit[docs]`` (pdfplumber), a page's ruled tables become Markdown rows
(:mod:`ragkit.ingest.formats.pdf_tables`), within the same ``page_seconds``.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from ragkit.errors import LoadError
from ragkit.ingest.formats.ocr import OcrTimeout, ocr_image, ocr_missing
from ragkit.ingest.formats.pdf_tables import PdfTables
from ragkit.ingest.formats.text import clean
from ragkit.ingest.limits import TimeLimitExceeded, time_limit
from ragkit.ingest.registry import LoadContext
from ragkit.types import Document

__all__ = ["PDF_MAX_IMAGE_BYTES", "PDF_MAX_STREAM_BYTES", "load_pdf"]

logger = logging.getLogger(__name__)

# A compressed PDF stream can expand a thousandfold; pypdf allows 75 MB per stream. Text pages
# never need that much, so decompression stops here (a "zip bomb" becomes an unreadable page).
PDF_MAX_STREAM_BYTES = 8_000_000
# A scanned page's image: 300 dpi A4 in colour is 26 MB decoded.
PDF_MAX_IMAGE_BYTES = 64_000_000
_MAX_OUTLINE = 10_000


def _limits(size: int) -> dict[str, int]:
    return {f"{kind}_maximum_output_length": size for kind in ("zlib", "lzw", "array_based_stream")}


def load_pdf(data: bytes, context: LoadContext) -> list[Document]:
    """One document per PDF: its pages' text joined by blank lines."""
    rel = context.source
    if b"%PDF-" not in data[:1024]:
        raise LoadError(rel, "not a PDF file (no %PDF- header)")
    import pypdf  # imported here: only PDF files pay for it

    max_text = min(int(context.options.get("max_file_bytes", context.max_chars)), context.max_chars)
    with pypdf.apply_configuration(**_limits(PDF_MAX_STREAM_BYTES)):  # a context variable: other threads keep theirs
        reader, title = _open(pypdf.PdfReader, data, rel)
        tables = PdfTables(data, rel) if PdfTables.available() else None
        reading = _Pages(context, max_text, tables)
        try:
            reading.read(reader)
        finally:
            if tables is not None:
                tables.close()
        starts = reading.starts()
        with time_limit(context.page_seconds):
            outline = _pdf_outline(reader, rel, starts)
    meta = context.metadata("pdf", pages=starts, outline=outline)
    meta["title"] = title or meta["title"]
    if reading.ocr_pages:
        meta["ocr_pages"] = reading.ocr_pages
    if reading.notes:
        meta["notes"] = reading.notes
    return [Document(rel, "\n\n".join(t for _, t in reading.parts), meta)]


def _open(PdfReader: Any, data: bytes, rel: str) -> tuple[Any, str | None]:
    # pypdf raises many exception types on damaged input; each one just means "unreadable".
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError(rel, "encrypted PDF: a password is needed to read it")
        info = reader.metadata
        title = str(info.title).strip() if info is not None and info.title else None
        len(reader.pages)
    except LoadError:
        raise
    except Exception as e:
        raise LoadError(rel, f"cannot read PDF ({type(e).__name__}: {e})") from None
    return reader, title


class _Pages:
    """Reads a PDF's pages one by one: text layer, else OCR; skipped pages and OCR'd ones noted."""

    def __init__(self, context: LoadContext, max_text: int, tables: PdfTables | None = None) -> None:
        self.context, self.max_text, self.tables = context, max_text, tables
        self.parts: list[tuple[int, str]] = []
        self.ocr_pages: list[int] = []
        self.notes: list[str] = []
        self.scanned: list[int] = []  # pages without text that were not OCR'd
        self.untabled: list[int] = []  # pages whose table finding ran out of time
        self.error: str | None = None
        self.ocr = context.options.get("ocr", "auto")
        self.ocr_missing = ocr_missing() if self.ocr else "OCR (turned off)"
        self._size = 0

    def read(self, reader: Any) -> None:
        seconds = self.context.page_seconds
        for number, page in enumerate(reader.pages, start=1):
            started = time.monotonic()
            try:
                with time_limit(seconds):
                    text = clean(page.extract_text() or "").strip()
                    scanned = not text and len(page.images) > 0  # counted, not decoded
                    images = self._images(page) if scanned and self.ocr_missing is None else []
                if images:
                    text = self._ocr(images, number)  # outside the alarm: tesseract has its own timeout
                elif scanned:
                    self.scanned.append(number)
                elif text:
                    text = self._with_tables(number, page, text, started)
            except (TimeLimitExceeded, OcrTimeout):
                self._skip(number, f"took over {seconds:g} s to read (page_seconds)")
                continue
            except Exception as e:  # one damaged page should not cost the rest of the document
                logger.warning("%s: skipping page %d: %s: %s", self.context.source, number, type(e).__name__, e)
                self.error = self.error or f"{type(e).__name__}: {e}"
                self._skip(number, f"unreadable ({type(e).__name__})")
                continue
            if text:
                self._add(number, text)
        self._finish()

    def _with_tables(self, number: int, page: Any, text: str, started: float) -> str:
        """The page's text with its ruled tables as Markdown rows, in what is left of ``page_seconds``;
        pypdf's ``text`` if there are none, or if finding them fails or runs out of time."""
        seconds = self.context.page_seconds
        left = None if seconds is None else seconds - (time.monotonic() - started)
        if self.tables is None or (left is not None and left <= 0):
            return text
        try:
            with time_limit(left):
                return self.tables.page_text(number, page, len(text)) or text
        except TimeLimitExceeded:
            self.untabled.append(number)
        except Exception as e:  # noqa: BLE001 - pdfminer disagreeing with pypdf costs the tables, not the text
            logger.warning("%s: page %d: no tables: %s: %s", self.context.source, number, type(e).__name__, e)
        return text

    @staticmethod
    def _images(page: Any) -> list[Any]:
        """The page's images, decoded (a scanned page is one), within a larger stream limit."""
        import pypdf

        with pypdf.apply_configuration(**_limits(PDF_MAX_IMAGE_BYTES)):
            return [img.image for img in page.images]

    def _ocr(self, images: list[Any], number: int) -> str:
        seconds = self.context.page_seconds
        text = "\n".join(ocr_image(image, seconds).strip() for image in images).strip()
        if text:
            self.ocr_pages.append(number)
        return text

    def _skip(self, number: int, why: str) -> None:
        self.notes.append(f"page {number} skipped: {why}")

    def _add(self, number: int, text: str) -> None:
        self._size += len(text) + 2
        if self._size > self.max_text:
            raise LoadError(self.context.source, f"extracted text too large: over {self.max_text} characters by "
                                                 f"page {number} (max_chars; max_file_bytes also bounds it)")
        self.parts.append((number, text))

    def _finish(self) -> None:
        rel = self.context.source
        if self.ocr_pages:
            self.notes.insert(0, f"OCR'd {_pages(self.ocr_pages)}")
        if self.untabled:
            self.notes.append(f"{_pages(self.untabled)}: tables read as plain text (over page_seconds)")
        if self.scanned and self.parts:
            self.notes.append(f"{_pages(self.scanned)}: no text layer, not OCR'd: "
                              f"{self.ocr_missing} is missing (pip install 'ragkit[ocr]')")
        if self.parts:
            return
        if self.scanned:
            raise LoadError(rel, f"no text layer (a scanned PDF): needs ragkit[ocr]: pip install 'ragkit[ocr]' "
                                 f"({self.ocr_missing} is missing)")
        if self.notes and not self.error:
            raise LoadError(rel, f"too complex: every page was skipped ({self.notes[0]})")
        raise LoadError(rel, f"cannot read PDF ({self.error})" if self.error else "no extractable text")

    def starts(self) -> list[list[int]]:
        starts, offset = [], 0
        for number, text in self.parts:
            starts.append([offset, number])
            offset += len(text) + 2  # the "\n\n" joining pages
        return starts


def _pages(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` as ``"pages 1-3, 7"``, ``[4]`` as ``"page 4"``."""
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ("page " if len(numbers) == 1 else "pages ") + ", ".join(out)


def _pdf_outline(reader: Any, rel: str, starts: list[list[int]]) -> list[list[Any]]:
    """The PDF's bookmarks as ``[offset, level, title]``, each at the start of its page's text: the
    only headings a PDF's chunks get (its text is not Markdown, a "#" line is just text)."""
    out: list[list[Any]] = []
    todo: list[tuple[Any, int]] = [(item, 1) for item in reversed(reader.outline or [])]
    try:
        while todo and len(out) < _MAX_OUTLINE:  # a stack, not recursion: outlines can nest deeply
            item, level = todo.pop()
            if isinstance(item, list):
                todo += [(child, level + 1) for child in reversed(item)]
                continue
            page = reader.get_destination_page_number(item) + 1
            at = next((offset for offset, number in starts if number >= page), None)
            title = clean(str(item.title or "")).strip()
            if at is not None and title:
                out.append([at, level, title])
    except (TimeLimitExceeded, Exception) as e:  # a damaged or costly outline costs the headings, not the text
        logger.warning("%s: ignoring the PDF outline: %s: %s", rel, type(e).__name__, e)
    return out
