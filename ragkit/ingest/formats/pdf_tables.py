"""Ruled tables on PDF pages as Markdown rows, with pdfplumber (``ragkit[docs]``).

pypdf's text layer has no table structure: a table comes out as its cells' words in reading order,
so a row's cells lose their column names. When pdfplumber is installed, :class:`PdfTables` opens the
same PDF (pdfminer's parser) and, for a page pypdf has read, finds the tables drawn with ruling lines
(``page.find_tables()``, its default ``lines`` strategy) and returns the page's text with each table
written as Markdown rows (:func:`~ragkit.ingest.formats.tables.markdown_table`) where it stands, and
the words of the table's region left out, so they are not there twice. Pages without a ruled table,
pages over :data:`PDF_TABLE_MAX_CHARS`, and PDFs pdfplumber cannot open keep pypdf's text. The caller
runs each call under its per-page time limit.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from ragkit.ingest.formats.tables import markdown_table
from ragkit.ingest.formats.text import clean

__all__ = ["PDF_TABLE_MAX_CHARS", "PdfTables"]

logger = logging.getLogger(__name__)

# Table finding lays out every character and line on the page in pure Python (0.4 s for a dense page
# of ~4,700 characters here); a page with more text than this keeps pypdf's text.
PDF_TABLE_MAX_CHARS = 20_000
# So pdfplumber only reads pages that draw lines: a ruled 2x2 table is at least six edges (a "re" is
# four, an "l" one). A text page has none, and costs only this scan of its content stream.
_PATH_OP = re.compile(rb"\s(re|l)\s")
_MIN_EDGES = 6


class PdfTables:
    """pdfplumber's view of one PDF, opened on first use; ``page_text`` is ``None`` where it adds nothing."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source = data, source
        self._pdf: Any = None
        self._failed = False

    @staticmethod
    def available() -> bool:
        try:
            import pdfplumber  # noqa: F401  (the extra's part; without it PDFs read as before)
        except ImportError:
            return False
        return True

    def page_text(self, number: int, pypdf_page: Any, pypdf_chars: int) -> str | None:
        """Page ``number`` (from 1) with its ruled tables as Markdown rows, or ``None`` if it has none."""
        if self._failed or pypdf_chars > PDF_TABLE_MAX_CHARS or not _draws_lines(pypdf_page):
            return None
        pdf = self._open()
        if pdf is None or number > len(pdf.pages):
            return None
        page = pdf.pages[number - 1]
        try:
            tables = [(t, rows) for t in page.find_tables() if _is_grid(t) and _has_text(rows := t.extract())]
            return _with_tables(page, tables) if tables else None
        finally:
            page.close()  # drops the page's layout cache: memory stays one page's worth

    def _open(self) -> Any:
        if self._pdf is None and not self._failed:
            import pdfplumber

            try:
                self._pdf = pdfplumber.open(io.BytesIO(self.data))
            except Exception as e:  # noqa: BLE001 - pypdf read it; a parser that disagrees costs only the tables
                logger.warning("%s: no PDF tables (pdfplumber: %s: %s)", self.source, type(e).__name__, e)
                self._failed = True
        return self._pdf

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()
            self._pdf = None


def _draws_lines(page: Any) -> bool:
    """Whether pypdf's page draws enough line segments to rule a table, or has a form XObject (whose
    drawing is not in the page's own stream): a cheap test before pdfminer lays the page out."""
    xobjects = (page.get("/Resources") or {}).get("/XObject") or {}
    if any(xobject.get_object().get("/Subtype") == "/Form" for xobject in xobjects.values()):
        return True
    contents = page.get_contents()
    data = contents.get_data() if contents is not None else b""
    edges = 0
    for match in _PATH_OP.finditer(data):
        edges += 4 if match.group(1) == b"re" else 1
        if edges >= _MIN_EDGES:
            return True
    return False


def _is_grid(table: Any) -> bool:
    # A ruled box around a note is a one-cell "table"; only rows under a header are worth columns.
    rows = table.rows
    return len(rows) >= 2 and max(len(r.cells) for r in rows) >= 2


def _has_text(rows: list[list[str | None]]) -> bool:
    # A grid of empty cells (graph paper, a form's blank boxes) would be rows of "|  |" and nothing else.
    return any(cell and cell.strip() for row in rows for cell in row)


def _mid(obj: dict[str, Any]) -> tuple[float, float]:
    return (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2


def _inside(obj: dict[str, Any], boxes: list[tuple[float, float, float, float]]) -> bool:
    x, y = _mid(obj)
    return any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)


def _with_tables(page: Any, tables: list[tuple[Any, list[list[str | None]]]]) -> str:
    """The page's words outside the tables, in bands between them (top to bottom), and each table (with
    its extracted rows) as Markdown rows in its place. A character belongs to the band or table holding
    its centre."""
    tables = sorted(tables, key=lambda t: t[0].bbox[1])
    boxes = [t.bbox for t, _ in tables]
    parts: list[str] = []
    above = float("-inf")
    for table, rows in tables:
        parts.append(_band(page, boxes, above, table.bbox[1]))
        parts.append(markdown_table(rows))
        above = max(above, table.bbox[3])
    parts.append(_band(page, boxes, above, float("inf")))
    return "\n\n".join(p for p in (clean(part).strip() for part in parts) if p)


def _band(page: Any, boxes: list[tuple[float, float, float, float]], top: float, bottom: float) -> str:
    def keep(obj: dict[str, Any]) -> bool:
        if "top" not in obj or "x0" not in obj:
            return False
        return top <= _mid(obj)[1] < bottom and not _inside(obj, boxes)

    return page.filter(keep).extract_text() or ""
