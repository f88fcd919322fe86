"""Spreadsheets: ``.xlsx`` with openpyxl (``ragkit[docs]``), ``.csv``/``.tsv`` with the standard library.

One section per sheet, headed by the sheet's name, which each chunk also gets as ``sheet`` metadata;
rows become Markdown table rows under the sheet's first non-empty row as the header
(:mod:`ragkit.ingest.formats.tables`). Spreadsheets are often larger than anything worth indexing, so
a sheet is cut, with a note in the report, at ``max_chars`` characters, and a run of
:data:`MAX_EMPTY_RUN` empty rows ends a sheet (a million formatted but empty rows cost no time).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from ragkit.errors import LoadError
from ragkit.ingest.formats.office import check_zip
from ragkit.ingest.formats.tables import cell_text, markdown_table
from ragkit.ingest.formats.text import TextBuilder
from ragkit.ingest.registry import LoadContext, needs_extra
from ragkit.types import Document

__all__ = ["MAX_EMPTY_RUN", "load_csv", "load_xlsx"]

MAX_EMPTY_RUN = 10_000


def _add_sheet(builder: TextBuilder, name: str, rows: Iterable[Sequence[Any]]) -> int:
    """Add one sheet as a section; the number of rows read."""
    builder.location(sheet=name)
    builder.heading(name, 1)
    kept: list[list[str]] = []
    size, empty, read = 0, 0, 0
    room = builder.max_chars - len(builder.text)
    for row in rows:
        read += 1
        cells = [cell_text(v) for v in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            empty += 1
            if empty >= MAX_EMPTY_RUN:
                builder.notes.append(f"sheet {name!r}: stopped after {MAX_EMPTY_RUN} empty rows in a row "
                                     f"(row {read})")
                break
            continue
        empty = 0
        size += sum(len(c) + 3 for c in cells) + 2
        if size > room:  # the builder notes the cut; rows past it are not even kept
            kept.append(cells)
            break
        kept.append(cells)
    builder.add(markdown_table(kept), f"sheet {name!r} row {read}")
    return read


def load_xlsx(data: bytes, context: LoadContext) -> list[Document]:
    """An Excel workbook: each worksheet's cell values (not formulas), sheet by sheet."""
    try:
        import openpyxl
    except ImportError:
        raise needs_extra(context.source, "docs", "openpyxl") from None
    check_zip(data, context, "Excel (.xlsx)")
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types on damaged parts
        raise LoadError(context.source, f"cannot read Excel file ({type(exc).__name__}: {exc})") from None
    builder = TextBuilder(context.source, context.max_chars, truncate=True)
    sheets = []
    try:
        for sheet in book.worksheets:
            if builder.full:
                builder.notes.append(f"sheet {sheet.title!r} not read (max_chars)")
                continue
            if hasattr(sheet, "reset_dimensions"):
                sheet.reset_dimensions()  # a stated A1:Z1000000 must not make openpyxl pad empty rows
            _add_sheet(builder, sheet.title, sheet.iter_rows(values_only=True))
            sheets.append(sheet.title)
    finally:
        book.close()
    return [builder.document(context.metadata(sheets=sheets), "no cell values in the workbook")]


def load_csv(data: bytes, context: LoadContext) -> list[Document]:
    """A ``.csv`` (delimiter sniffed: comma, semicolon, tab) or ``.tsv`` file as one sheet."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(context.source, f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} at position "
                                        f"{exc.start}); re-save it as UTF-8") from None
    delimiter = "\t" if context.kind == "tsv" else _sniff(text)
    csv.field_size_limit(min(context.max_chars, 2**31 - 1))
    builder = TextBuilder(context.source, context.max_chars, truncate=True)
    name = context.metadata()["title"]
    try:
        _add_sheet(builder, name, csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise LoadError(context.source, f"malformed {context.kind.upper()}: {exc}") from None
    return [builder.document(context.metadata(sheets=[name]), "no values")]


def _sniff(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:20_000], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","
