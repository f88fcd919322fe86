"""E-books (``.epub``), OpenDocument text (``.odt``), RTF (``.rtf``) and e-mail (``.eml``).

``.epub`` with ebooklib, ``.odt`` with odfpy, ``.rtf`` with striprtf (all in ``ragkit[docs]``; each is
small and pure Python); ``.eml`` with the standard library's :mod:`email`. HTML inside an e-book
chapter or an e-mail body is read by the same HTML loader as ``.html`` files.
"""

from __future__ import annotations

import email
import email.policy
import io
from typing import Any

from ragkit.errors import LoadError
from ragkit.ingest.formats.office import check_zip
from ragkit.ingest.formats.text import TextBuilder
from ragkit.ingest.registry import LoadContext, loader_for, needs_extra, resolve
from ragkit.types import Document

__all__ = ["load_eml", "load_epub", "load_odt", "load_rtf"]


def _html_text(html: str, context: LoadContext, part: str) -> str:
    """The visible text of an HTML part, through the registry's ``.html`` loader."""
    spec = loader_for(".html")
    assert spec is not None
    sub = LoadContext(f"{context.source}#{part}", part, "html", context.max_chars, context.page_seconds)
    try:
        return resolve(spec)(html.encode("utf-8"), sub)[0].text
    except LoadError:
        return ""  # an empty chapter or body part


def load_epub(data: bytes, context: LoadContext) -> list[Document]:
    """An e-book: its chapters in reading order, each a section headed by its first heading."""
    try:
        from ebooklib import ITEM_DOCUMENT, epub
    except ImportError:
        raise needs_extra(context.source, "docs", "ebooklib") from None
    check_zip(data, context, "EPUB")
    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
        items = [book.get_item_with_id(i) for i, _ in book.spine] or list(book.get_items_of_type(ITEM_DOCUMENT))
    except Exception as exc:  # ebooklib raises many types on damaged books
        raise LoadError(context.source, f"cannot read EPUB ({type(exc).__name__}: {exc})") from None
    builder = TextBuilder(context.source, context.max_chars)
    for item in items:
        if item is None or item.get_type() != ITEM_DOCUMENT:
            continue
        text = _html_text(item.get_content().decode("utf-8", "replace"), context, item.get_name())
        lines = text.split("\n", 1)
        if lines[0].startswith("#"):
            builder.heading(lines[0].lstrip("#").strip(), 1)
            text = lines[1] if len(lines) > 1 else ""
        builder.add(text)
    meta = context.metadata()
    titles = book.get_metadata("DC", "title")
    meta["title"] = (titles[0][0] if titles else "") or meta["title"]
    return [builder.document(meta, "no text in the e-book")]


def load_odt(data: bytes, context: LoadContext) -> list[Document]:
    """An OpenDocument text: headings (``text:h``) as sections, paragraphs in order."""
    try:
        from odf import teletype
        from odf.opendocument import load
    except ImportError:
        raise needs_extra(context.source, "docs", "odfpy") from None
    check_zip(data, context, "OpenDocument (.odt)")
    try:
        document = load(io.BytesIO(data))
    except Exception as exc:  # odfpy raises many types on damaged files
        raise LoadError(context.source, f"cannot read OpenDocument file ({type(exc).__name__}: {exc})") from None
    builder = TextBuilder(context.source, context.max_chars)
    for node in _walk(document.text):
        name = getattr(node, "qname", ("", ""))[1]
        if name == "h":
            builder.heading(teletype.extractText(node), int(node.getAttribute("outlinelevel") or 1))
        elif name == "p":
            builder.add(teletype.extractText(node))
    return [builder.document(context.metadata(), "no text in the document")]


def _walk(node: Any) -> Any:
    """Headings and paragraphs in document order (a stack, not recursion: nesting can be deep)."""
    todo = list(reversed(node.childNodes))
    while todo:
        current = todo.pop()
        name = getattr(current, "qname", ("", ""))[1]
        if name in ("h", "p"):
            yield current
        else:
            todo.extend(reversed(getattr(current, "childNodes", [])))


def load_rtf(data: bytes, context: LoadContext) -> list[Document]:
    """An RTF document's text."""
    try:
        from striprtf.striprtf import rtf_to_text
    except ImportError:
        raise needs_extra(context.source, "docs", "striprtf") from None
    if not data.lstrip().startswith(b"{\\rtf"):
        raise LoadError(context.source, "not an RTF file (no {\\rtf header)")
    builder = TextBuilder(context.source, context.max_chars)
    builder.add(rtf_to_text(data.decode("latin-1"), errors="ignore"))
    return [builder.document(context.metadata(), "no text in the RTF file")]


def load_eml(data: bytes, context: LoadContext) -> list[Document]:
    """An e-mail: subject as title, sender and date in metadata, its text (or HTML) body."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        raise LoadError(context.source, "no text body in the e-mail")
    try:
        content = body.get_content()
    except (LookupError, ValueError) as exc:
        raise LoadError(context.source, f"cannot decode the e-mail body ({exc})") from None
    if body.get_content_subtype() == "html":
        content = _html_text(content, context, "body.html")
    builder = TextBuilder(context.source, context.max_chars)
    builder.add(content)
    meta = context.metadata("email", **{k: str(message[k]) for k in ("from", "to", "date") if message[k]})
    meta["title"] = str(message["subject"] or "") or meta["title"]
    return [builder.document(meta, "empty e-mail")]
