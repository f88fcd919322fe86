"""Read files into :class:`~ragkit.types.Document` values.

:func:`load_file` reads one file (:func:`ragkit.ingest.files.iter_files` lists them). Every failure
to read, decode or parse a file is a :class:`~ragkit.errors.LoadError` naming the file and the
reason, so a sync can report it and go on.
"""

from __future__ import annotations

import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ragkit.errors import LoadError

# iter_files and SUPPORTED_SUFFIXES are named here too for code that imported them from here.
from ragkit.ingest.files import SUPPORTED_SUFFIXES, iter_files
from ragkit.ingest.formats.pdf import PDF_MAX_STREAM_BYTES
from ragkit.ingest.formats.text import clean as _clean
from ragkit.ingest.limits import DEFAULT_LIMITS
from ragkit.ingest.markup import read_markdown
from ragkit.ingest.registry import LoadContext, LoaderSpec, loader_for, resolve
from ragkit.types import Document

__all__ = ["PDF_MAX_STREAM_BYTES", "SUPPORTED_SUFFIXES", "iter_files", "load_bytes", "load_file", "load_html",
           "load_json", "load_plain"]

logger = logging.getLogger(__name__)

_BINARY_SNIFF_BYTES = 8192
_FENCE = re.compile(r"^\s*(```|~~~)")
_H1 = re.compile(r"^# +(.+?)(?:\s+#+)?\s*$")
# A file whose suffix no loader claims (listed by an --include pattern) is read as text.
_AS_TEXT = LoaderSpec("", "ragkit.ingest.loading:load_plain", "text", False)


def _decode(data: bytes, rel: str, max_chars: int) -> str:
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
    if len(text) > max_chars:  # before parsing: HTML and JSON parsers cost in proportion to it
        raise LoadError(rel, f"text too long: {len(text)} characters > limit {max_chars} (max_chars)")
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
    **options: Any,
) -> list[Document]:
    """:func:`load_file` for bytes already read (a sync reads each file once, see ``read_listed``);
    ``name`` (default: the last part of ``rel``) picks the loader from the registry
    (:mod:`ragkit.ingest.registry`); other ``options`` go to the loader.

    A file whose text is over ``max_chars`` characters is a LoadError ("text too long"): chunking,
    embedding and indexing cost in proportion to characters, not bytes. ``page_seconds`` bounds
    each PDF page's extraction (by SIGALRM: give it only in a worker process's main thread)."""
    name = name or Path(rel).name
    if not data.strip():
        raise LoadError(rel, "empty file")
    spec = loader_for(name) or _AS_TEXT
    context = LoadContext(rel, name, spec.kind, max_chars, page_seconds,
                          {"json_text_field": json_text_field, "json_id_field": json_id_field,
                           "max_file_bytes": max_file_bytes, **options})
    try:
        docs = list(resolve(spec)(data, context))
    except LoadError as exc:
        raise exc if exc.path == rel else LoadError(rel, exc.reason) from None
    return _checked(docs, rel, max_chars)


def _checked(docs: list[Document], rel: str, max_chars: int) -> list[Document]:
    """A loader's answer, held to the contract: documents, and no more text than ``max_chars``."""
    if not docs or not all(isinstance(d, Document) for d in docs):
        raise LoadError(rel, f"its loader returned {type(docs[0]).__name__ if docs else 'no documents'}, "
                             "not a list of Documents")
    total = sum(len(d.text) for d in docs)
    if total > max_chars:
        raise LoadError(rel, f"text too long: {total} characters > limit {max_chars} (max_chars)")
    return docs


def load_plain(data: bytes, context: LoadContext) -> list[Document]:
    """Text, Markdown, reStructuredText and code: UTF-8, one document; Markdown's first ``#`` is its title."""
    text = _decode(data, context.source, context.max_chars)
    meta = context.metadata()
    if context.kind == "markdown":  # site markup and front matter are not text (ragkit.ingest.markup)
        text, front = read_markdown(text, context.source)
        if not text.strip():
            raise LoadError(context.source, "no text besides front matter and markup")
        return [Document(context.source, text, {**meta, "title": _first_heading(text) or meta["title"], **front})]
    if context.kind != "code":
        meta["title"] = _first_heading(text) or meta["title"]
    return [Document(context.source, text, meta)]


def load_html(data: bytes, context: LoadContext) -> list[Document]:
    """An HTML page's visible text, headings as Markdown ``#`` lines; its ``<title>`` is the title."""
    parser = _HTMLText()
    parser.feed(_decode(data, context.source, context.max_chars))
    parser.close()
    text, html_title = _clean(parser.text()), parser.title()
    if not text.strip():
        raise LoadError(context.source, "no visible text in HTML")
    meta = context.metadata()
    meta["title"] = html_title or _first_heading(text) or meta["title"]
    return [Document(context.source, text, meta)]


def load_json(data: bytes, context: LoadContext) -> list[Document]:
    """One document per JSON record or JSONL line (see :func:`load_file`)."""
    text = _decode(data, context.source, context.max_chars)
    return _read_json(text, context.source, context.metadata(), jsonl=context.name.lower().endswith(".jsonl"),
                      text_field=context.options.get("json_text_field", "text"),
                      id_field=context.options.get("json_id_field", "id"))


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
_TABLE = frozenset({"table", "tr", "td", "th"})
_WS = re.compile(r"\s+")


class _HTMLText(HTMLParser):
    """Collects the visible text of an HTML page, with headings as Markdown ``#`` lines and tables as
    Markdown rows (the first row the header; a cell's paragraphs and lines stay on its row).

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
        self._tables: list[list[int]] = []  # open tables: [cells of the open row, -1 if none; rows closed]

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
        elif tag in _TABLE and (tag == "table" or self._tables):
            self._table_start(tag)
        elif (self._heading or self._in_cell()) and (tag in _PARAGRAPH or tag in _LINE):
            self._space = True  # keep a heading, and a table row, on one line
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
        elif tag in _TABLE and self._tables:
            if tag in ("tr", "table"):
                self._end_row()
            if tag == "table":
                self._tables.pop()
                self._break(2)
        elif self._in_cell() and (tag in _PARAGRAPH or tag in _LINE):
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
        if self._in_cell():
            words = words.replace("|", "\\|")  # a literal bar must not start a new column
        if not words.strip():
            self._space = self._space or bool(words)
            return
        if (self._space or words[0] == " ") and self._newlines == 0 and not self._out[-1].endswith(" "):
            self._out.append(" ")
        self._out.append(words.strip())
        self._newlines, self._space = 0, words[-1] == " "

    def _in_cell(self) -> bool:
        return bool(self._tables) and self._tables[-1][0] > 0

    def _table_start(self, tag: str) -> None:
        if tag == "table":
            self._end_row()  # a table nested in a cell ends the outer row
            self._break(2)
            self._tables.append([-1, 0])
            return
        state = self._tables[-1]
        if tag == "tr" or state[0] < 0:  # a cell outside <tr> opens a row too
            self._end_row()
            self._break(1)
            self._out.append("|")
            state[0] = 0
        if tag != "tr":
            if state[0] > 0:
                self._out.append(" |")
            state[0] += 1
        self._newlines, self._space = 0, True

    def _end_row(self) -> None:
        """Close the open row of the innermost table; after its first row, the header separator."""
        if not self._tables or self._tables[-1][0] < 0:
            return
        state = self._tables[-1]
        self._out.append(" |")
        if state[1] == 0:
            self._out.append("\n|" + " --- |" * max(state[0], 1))
        state[0], state[1] = -1, state[1] + 1
        self._newlines = 0
        self._break(1)
