"""Word (``.docx``) and PowerPoint (``.pptx``) with python-docx and python-pptx (``ragkit[docs]``).

Why these and not markitdown: markitdown reads Office files through the same python-docx,
python-pptx and openpyxl (plus mammoth, pandas, magika and onnxruntime: 93 MB more than these
10.6 MB in our environment, 329 MB in a fresh one) and returns one Markdown string, from which slide
numbers, speaker notes and sheet names would have to be parsed back. Reading the libraries directly
keeps that structure: headings from paragraph styles, tables as Markdown rows, one section per slide
with its number in ``locations`` metadata and its speaker notes kept.

Office files are zip archives: :func:`open_zip` checks the archive before a library inflates it, so a
truncated file or a zip bomb is a LoadError, not a crash or gigabytes of memory.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from ragkit.errors import LoadError
from ragkit.ingest.formats.tables import markdown_table
from ragkit.ingest.formats.text import TextBuilder
from ragkit.ingest.registry import LoadContext, needs_extra
from ragkit.types import Document

__all__ = ["MAX_UNZIPPED_BYTES", "check_zip", "load_docx", "load_pptx"]

# What an Office file may inflate to: a 50 MB document of text inflates to a few hundred MB of XML
# at most; a zip bomb to terabytes.
MAX_UNZIPPED_BYTES = 500_000_000
_HEADING_STYLE = re.compile(r"(?:heading|überschrift|titre|título)\s*(\d)", re.IGNORECASE)


def check_zip(data: bytes, context: LoadContext, label: str) -> None:
    """Refuse a damaged archive and one whose members would inflate past :data:`MAX_UNZIPPED_BYTES`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
            bad = archive.testzip() if total <= MAX_UNZIPPED_BYTES else None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise LoadError(context.source, f"not a readable {label} file (a damaged or truncated zip archive: "
                                        f"{exc})") from None
    if total > MAX_UNZIPPED_BYTES:
        raise LoadError(context.source, f"too complex: the {label} archive inflates to {total} bytes, over "
                                        f"{MAX_UNZIPPED_BYTES} (a zip bomb?)")
    if bad is not None:
        raise LoadError(context.source, f"not a readable {label} file (member {bad} is damaged)")


def _library(context: LoadContext, module: str, package: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise needs_extra(context.source, "docs", package) from None


def load_docx(data: bytes, context: LoadContext) -> list[Document]:
    """A Word document: paragraphs in order, ``Heading N`` and ``Title`` styles as headings, tables as rows."""
    docx = _library(context, "docx", "python-docx")
    check_zip(data, context, "Word (.docx)")
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors on damaged parts
        raise LoadError(context.source, f"cannot read Word file ({type(exc).__name__}: {exc})") from None
    builder = TextBuilder(context.source, context.max_chars)
    paragraphs: list[str] = []
    for element in document.element.body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(element, document)
            level = _heading_level(paragraph)
            if level:
                builder.add("\n".join(paragraphs))
                paragraphs = []
                builder.heading(paragraph.text, level)
            elif paragraph.text.strip():
                paragraphs.append(paragraph.text)
        elif tag == "tbl":
            builder.add("\n".join(paragraphs))
            paragraphs = []
            builder.add(markdown_table([cell.text for cell in row.cells] for row in Table(element, document).rows))
    builder.add("\n".join(paragraphs))
    props = document.core_properties
    meta = context.metadata()
    meta["title"] = (props.title or "").strip() or (builder.outline[0][2] if builder.outline else meta["title"])
    return [builder.document(meta, "no text in the Word document")]


def _heading_level(paragraph: Any) -> int:
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    if name.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(name)
    return min(int(match[1]), 6) if match else 0


def load_pptx(data: bytes, context: LoadContext) -> list[Document]:
    """A slide deck: one section per slide (heading: its title), its text, tables and speaker notes."""
    pptx = _library(context, "pptx", "python-pptx")
    check_zip(data, context, "PowerPoint (.pptx)")
    try:
        deck = pptx.Presentation(io.BytesIO(data))
        slides = list(deck.slides)
    except Exception as exc:  # python-pptx raises many types on damaged parts
        raise LoadError(context.source, f"cannot read PowerPoint file ({type(exc).__name__}: {exc})") from None
    builder = TextBuilder(context.source, context.max_chars)
    for number, slide in enumerate(slides, start=1):
        title_shape = slide.shapes.title
        title = (title_shape.text if title_shape is not None else "").strip()
        builder.location(slide=number)
        builder.heading(f"Slide {number}: {title}" if title else f"Slide {number}", 1)
        for shape in slide.shapes:
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if getattr(shape, "has_table", False) and shape.has_table:
                builder.add(markdown_table([c.text for c in row.cells] for row in shape.table.rows))
            elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                builder.add(shape.text_frame.text)
        if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None and notes.text.strip():
            builder.add("Speaker notes: " + notes.text)
    meta = context.metadata(slides=len(slides))
    meta["title"] = (deck.core_properties.title or "").strip() or meta["title"]
    return [builder.document(meta, "no text in the slides")]
