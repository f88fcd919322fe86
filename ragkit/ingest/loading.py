"""Read files into :class:`~ragkit.types.Document` values.

:func:`load_file` reads one file (:func:`ragkit.ingest.files.iter_files` lists them). Every failure
to read, decode or parse a file is a :class:`~ragkit.errors.LoadError` naming the file and the
reason, so a sync can report it and go on.
"""

from __future__ import annotations

import io
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ragkit.errors import LoadError

# iter_files and SUPPORTED_SUFFIXES are named here too for code that imported them from here.
from ragkit.ingest.files import SUPPORTED_SUFFIXES, file_kind, iter_files
from ragkit.ingest.limits import DEFAULT_LIMITS, TimeLimitExceeded, time_limit
from ragkit.types import Document

__all__ = ["PDF_MAX_STREAM_BYTES", "SUPPORTED_SUFFIXES", "iter_files", "load_bytes", "load_file"]

logger = logging.getLogger(__name__)

_BINARY_SNIFF_BYTES = 8192
# Cc characters except \t and \n (\r is normalised before this is applied).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FENCE = re.compile(r"^\s*(```|~~~)")
_H1 = re.compile(r"^# +(.+?)(?:\s+#+)?\s*$")


def _clean(text: str) -> str:
    """Normalise newlines, drop control characters and replace lone surrogates (from JSON escapes
    such as "\\ud800"), which no tokenizer, database or terminal can encode."""
    text = text.encode("utf-8", "replace").decode("utf-8") if _SURROGATE.search(text) else text
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _decode(data: bytes, rel: str) -> str:
    if b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        raise LoadError(rel, "binary file (NUL byte found); not loaded as text")
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data[bom + e.start]
        raise LoadError(
            rel, f"not valid UTF-8 text (byte 0x{bad:02x} at position {bom + e.start}); re-save it as UTF-8"
        ) from None
    text = _clean(text)
    if not text.strip():
        raise LoadError(rel, "empty file")
    return text


def _first_heading(text: str) -> str | None:
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence  # "# " lines inside code blocks are comments, not headings
        elif not in_fence and (m := _H1.match(line)):
            return m.group(1)
    return None


def load_file(
    path: Path,
    rel: str,
    *,
    json_text_field: str = "text",
    json_id_field: str | None = "id",
    max_file_bytes: int = 50_000_000,
    max_chars: int = DEFAULT_LIMITS.max_chars,
) -> list[Document]:
    """Read one file into Documents; raise LoadError(rel_or_path, reason) if it can't be read/decoded/parsed.

    JSON and JSONL files give one Document per record (id ``"{rel}#{id}"``, or
    ``"{rel}#{n}"`` with ``n`` the 1-based line or record number); every other
    file gives one Document with id ``rel``. Files of unknown type are read as text.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise LoadError(rel, f"file too large: {size} bytes > limit {max_file_bytes} (max_file_bytes)")
        with path.open("rb") as f:
            data = f.read(max_file_bytes + 1)  # bounded: the file may have grown since stat
    except OSError as e:
        raise LoadError(rel, f"cannot read file: {e.strerror or e}") from None
    if len(data) > max_file_bytes:
        raise LoadError(rel, f"file too large: {len(data)}+ bytes > limit {max_file_bytes} (max_file_bytes)")
    return load_bytes(data, rel, name=path.name, json_text_field=json_text_field, json_id_field=json_id_field,
                      max_file_bytes=max_file_bytes, max_chars=max_chars)


def load_bytes(
    data: bytes,
    rel: str,
    *,
    name: str | None = None,
    json_text_field: str = "text",
    json_id_field: str | None = "id",
    max_file_bytes: int = 50_000_000,
    max_chars: int = DEFAULT_LIMITS.max_chars,
    page_seconds: float | None = None,
) -> list[Document]:
    """:func:`load_file` for bytes already read (a sync reads each file once, see ``read_listed``);
    ``name`` (default: the last part of ``rel``) picks the loader.

    A file whose text is over ``max_chars`` characters is a LoadError ("text too long"): chunking,
    embedding and indexing cost in proportion to characters, not bytes. ``page_seconds`` bounds
    each PDF page's extraction (by SIGALRM: give it only in a worker process's main thread)."""
    name = name or Path(rel).name
    if not data.strip():
        raise LoadError(rel, "empty file")

    kind = file_kind(name) or "text"
    stem = Path(rel).stem or Path(rel).name
    meta: dict[str, Any] = {"source": rel, "title": stem, "type": kind}
    if kind == "pdf":
        text, pdf_title, pages, outline = _read_pdf(data, rel, min(max_file_bytes, max_chars), page_seconds)
        meta.update(title=pdf_title or stem, pages=pages, outline=outline)
        return [Document(rel, text, meta)]
    text = _decode(data, rel)
    if len(text) > max_chars:
        raise LoadError(rel, f"text too long: {len(text)} characters > limit {max_chars} (max_chars)")
    if kind == "json":
        jsonl = name.lower().endswith(".jsonl")
        return _read_json(text, rel, meta, jsonl=jsonl, text_field=json_text_field, id_field=json_id_field)
    html_title = None
    if kind == "html":
        parser = _HTMLText()
        parser.feed(text)
        parser.close()
        text, html_title = _clean(parser.text()), parser.title()
        if not text.strip():
            raise LoadError(rel, "no visible text in HTML")
    if kind != "code":
        meta["title"] = html_title or _first_heading(text) or stem
    return [Document(rel, text, meta)]


# A compressed PDF stream can expand a thousandfold; pypdf allows 75 MB per stream. Text pages
# never need that much, so decompression stops here (a "zip bomb" becomes an unreadable page).
PDF_MAX_STREAM_BYTES = 8_000_000


_PdfText = tuple[str, "str | None", list[list[int]], list[list[Any]]]


def _read_pdf(data: bytes, rel: str, max_text_chars: int, page_seconds: float | None) -> _PdfText:
    if b"%PDF-" not in data[:1024]:
        raise LoadError(rel, "not a PDF file (no %PDF- header)")
    import pypdf  # imported here: only PDF files pay for it

    limits = {f"{kind}_maximum_output_length": PDF_MAX_STREAM_BYTES for kind in ("zlib", "lzw", "array_based_stream")}
    with pypdf.apply_configuration(**limits):  # a context variable: other threads keep their settings
        return _extract_pdf(data, rel, max_text_chars, pypdf.PdfReader, page_seconds)


def _extract_pdf(data: bytes, rel: str, max_text_chars: int, PdfReader: Any, page_seconds: float | None) -> _PdfText:  # noqa: N803

    parts: list[tuple[int, str]] = []
    page_error = None
    # pypdf raises many exception types on damaged input; each one just means "unreadable".
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError(rel, "encrypted PDF: a password is needed to read it")
        info = reader.metadata
        title = str(info.title).strip() if info is not None and info.title else None
        pages = list(reader.pages)
    except LoadError:
        raise
    except Exception as e:
        raise LoadError(rel, f"cannot read PDF ({type(e).__name__}: {e})") from None
    for number, page in enumerate(pages, start=1):
        try:
            with time_limit(page_seconds):
                page_text = _clean(page.extract_text() or "").strip()
        except TimeLimitExceeded:
            raise LoadError(rel, f"too complex: page {number} took over {page_seconds:g} s to extract "
                                 "(page_seconds)") from None
        except Exception as e:  # one damaged page should not cost the rest of the document
            logger.warning("%s: skipping page %d: %s: %s", rel, number, type(e).__name__, e)
            page_error = page_error or f"{type(e).__name__}: {e}"
            continue
        if page_text:
            parts.append((number, page_text))
            extracted = sum(len(t) for _, t in parts)
            if extracted > max_text_chars:
                raise LoadError(
                    rel, f"extracted text too large: over {max_text_chars} characters by page {number} "
                    "(max_file_bytes also bounds the text a PDF expands to)"
                )
    if not parts:
        raise LoadError(rel, f"cannot read PDF ({page_error})" if page_error else "no extractable text")
    starts, offset = [], 0
    for number, page_text in parts:
        starts.append([offset, number])
        offset += len(page_text) + 2  # the "\n\n" joining pages
    with time_limit(page_seconds):
        outline = _pdf_outline(reader, rel, starts)
    return "\n\n".join(t for _, t in parts), title, starts, outline


_MAX_OUTLINE = 10_000


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
            title = _clean(str(item.title or "")).strip()
            if at is not None and title:
                out.append([at, level, title])
    except (TimeLimitExceeded, Exception) as e:  # a damaged or costly outline costs the headings, not the text
        logger.warning("%s: ignoring the PDF outline: %s: %s", rel, type(e).__name__, e)
    return out


def _read_json(
    text: str, rel: str, meta: dict[str, Any], *, jsonl: bool, text_field: str, id_field: str | None
) -> list[Document]:
    records: list[tuple[int, str, Any]] = []  # (number, "line"/"record", value)
    if jsonl:
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    records.append((number, "line", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise LoadError(rel, f"line {number}: invalid JSON ({e.msg} at column {e.colno})") from None
                except RecursionError:
                    raise LoadError(rel, f"line {number}: JSON nested too deeply") from None
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise LoadError(rel, f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
        except RecursionError:
            raise LoadError(rel, "JSON nested too deeply") from None
        items = value if isinstance(value, list) else [value]
        records = [(number, "record", item) for number, item in enumerate(items, start=1)]

    docs: list[Document] = []
    ids: set[str] = set()
    for number, unit, record in records:
        where = f"{unit} {number}"
        if not isinstance(record, dict):
            raise LoadError(rel, f"{where}: expected a JSON object, got {type(record).__name__}")
        if text_field not in record:
            raise LoadError(rel, f"{where}: missing text field {text_field!r} (fields: {sorted(record)})")
        body = record[text_field]
        if not isinstance(body, str):
            raise LoadError(rel, f"{where}: text field {text_field!r} is {type(body).__name__}, not a string")
        has_id = id_field is not None and record.get(id_field) is not None
        doc_id = _clean(f"{rel}#{record[id_field] if has_id else number}")
        if doc_id in ids:
            raise LoadError(rel, f"{where}: duplicate id {doc_id!r}")
        ids.add(doc_id)
        extra = {
            _clean(k): _clean(v) if isinstance(v, str) else v  # metadata is shown too: no control characters
            for k, v in record.items()
            if k not in (text_field, id_field, "source", "type")
            and (v is None or isinstance(v, (str, int, float, bool)))
        }
        docs.append(Document(doc_id, _clean(body), {**meta, **extra}))
    if not docs:
        raise LoadError(rel, "no records")
    return docs


# --------------------------------------------------------------------------- HTML


_SKIP = frozenset({"script", "style", "noscript", "template", "head", "title"})
_PARAGRAPH = frozenset(
    "p pre blockquote table ul ol dl section article header footer main aside nav figure hr address "
    "fieldset form details h1 h2 h3 h4 h5 h6".split()
)
_LINE = frozenset("div li tr dt dd caption figcaption summary legend option body html br".split())
_SPACE = frozenset({"td", "th"})
_WS = re.compile(r"\s+")


class _HTMLText(HTMLParser):
    """Collects the visible text of an HTML page, with headings as Markdown ``#`` lines.

    HTMLParser is a flat tokenizer, so arbitrarily deep nesting costs no recursion.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skip: list[str] = []  # open invisible elements, innermost last
        self._title: list[str] = []
        self._titled = False  # only the first <title> counts (later ones are e.g. SVG tooltips)
        self._pre = 0  # depth of open <pre> elements
        self._heading = False
        self._newlines = 2  # newlines at the end of the output; 2 at the start so no leading break
        self._space = False  # whitespace seen since the last word

    def text(self) -> str:
        return "".join(self._out).strip()

    def title(self) -> str | None:
        return _WS.sub(" ", "".join(self._title)).strip() or None

    def _break(self, n: int) -> None:
        if self._newlines < n:
            self._out.append("\n" * (n - self._newlines))
            self._newlines = n
        self._space = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and "head" in self._skip:  # an unclosed <head> ends where <body> starts
            del self._skip[self._skip.index("head") :]
        if tag in _SKIP:
            self._skip.append(tag)
        elif self._skip:
            return
        elif self._heading and (tag in _PARAGRAPH or tag in _LINE):
            self._space = True  # keep a heading on one line
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._break(2)
            self._out.append("#" * int(tag[1]) + " ")
            self._heading, self._newlines = True, 0
        elif tag in _PARAGRAPH or tag in _LINE:
            self._break(2 if tag in _PARAGRAPH else 1)
            if tag == "pre":
                self._pre += 1
        elif tag in _SPACE:
            self._space = True

    def handle_endtag(self, tag: str) -> None:
        if tag in self._skip:
            self._titled = self._titled or (tag == "title" and bool(self._title))
            del self._skip[len(self._skip) - 1 - self._skip[::-1].index(tag) :]
        elif self._skip:
            return
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._heading = False
            self._break(2)
        elif tag in _PARAGRAPH or tag in _LINE:
            if not self._heading:
                self._break(2 if tag in _PARAGRAPH else 1)
            if tag == "pre" and self._pre:
                self._pre -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            if self._skip[-1] == "title" and not self._titled:
                self._title.append(data)
            return
        if self._pre and not self._heading:
            self._out.append(data)  # preformatted text keeps its whitespace
            stripped = data.rstrip("\n")
            self._newlines = len(data) - len(stripped) + (self._newlines if not stripped else 0)
            return
        words = _WS.sub(" ", data)
        if not words.strip():
            self._space = self._space or bool(words)
            return
        if (self._space or words[0] == " ") and self._newlines == 0 and not self._out[-1].endswith(" "):
            self._out.append(" ")
        self._out.append(words.strip())
        self._newlines, self._space = 0, words[-1] == " "
