"""Site markup that is syntax, not text: MkDocs/Material, pymdownx, Sphinx/MyST and GitHub Markdown.

:func:`read_markdown` turns a Markdown file's text into the text ragkit stores, chunks, embeds,
indexes and cites, plus the metadata its front matter gives. It runs when the file is loaded, so the
cleaned text *is* the document text: chunk offsets and citations point into it as into any text.

What goes, and what stays:

- front matter (YAML ``---``, TOML ``+++``, at the very start): removed; its simple keys
  (scalars, lists of scalars) become metadata, ``title`` the title (:mod:`ragkit.ingest.frontmatter`);
- heading anchors and attribute lists (``## Title { #id }``, ``{#id .class}``, ``{ .annotate }``,
  ``[link](url){ .md-button }``): removed;
- admonitions (``!!! note "Title"``, ``??? tip``, ``???+``, ``/// note | Title``), content tabs
  (``=== "Python"``, ``//// tab | Python``), MyST/Sphinx directives (```` ```{note} ````,
  ``:::{tip}``, ``.. note::``): the marker goes, the body stays (dedented); a title or tab label
  stays as a line of text;
- include directives (``--8<-- "file"``, ``{!> file !}``, ``{* file *}``, ``{include}``,
  ``.. include::``, ``.. toctree::``, mkdocstrings' ``::: package.name``): removed, also inside code
  fences, since they are expanded before the fence is read (an emptied fence goes too);
- HTML comments and tags (``<dfn title="...">type</dfn>`` keeps ``type``), MyST roles
  (``{ref}`Text <label>``` keeps ``Text``), targets (``(label)=``), icon shortcodes
  (``:material-check:``), GitHub alert markers (``> [!NOTE]``): removed;
- code: fenced code blocks and inline code spans are kept exactly (they are code, not markup),
  except the HTML colouring of terminal transcripts (```` ```console ````).
"""

from __future__ import annotations

import html
import re
from typing import Any

from ragkit.ingest.frontmatter import split_front_matter

__all__ = ["clean_heading", "read_markdown", "strip_markup"]

_MAX_DEPTH = 32  # containers nested deeper are read as plain text (bounded recursion on hostile input)

_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})[ \t]*(.*?)[ \t]*$")
_DIRECTIVE = re.compile(r"^\{([\w:.-]+)\}[ \t]*(.*)$")  # a MyST fence's info string: {note} Title
_COLON = re.compile(r"^([ \t]*)(:{3,})[ \t]*(.*?)[ \t]*$")
_BLOCK = re.compile(r"^([ \t]*)(/{3,})[ \t]*(?:([\w-]+)[ \t]*(?:\|[ \t]*(.*?))?)?[ \t]*$")
_ADMONITION = re.compile(r"""^([ \t]*)(?:!!!|\?\?\?\+?)(?:[ \t]+[\w-]+)*[ \t]*(?:"([^"]*)"|'([^']*)')?[ \t]*$""")
_TAB = re.compile(r"""^([ \t]*)===[!+]?[ \t]+(?:"([^"]*)"|'([^']*)')[ \t]*$""")
_RST = re.compile(r"^([ \t]*)\.\.[ \t]+([\w:.-]+)::(?:[ \t]+(.*?))?[ \t]*$")
_RST_TARGET = re.compile(r"^[ \t]*\.\.[ \t]+(?:_[^:]*:|\|[^|]+\|[ \t]+[\w-]+::).*$")
_SNIPPET = re.compile(r"""^[ \t]*-+8<-+[ \t]*(?:"[^"\n]*"|'[^'\n]*'|[^\s"']\S*)?[ \t]*$""")
_SNIPPET_BLOCK = re.compile(r"^[ \t]*-+8<-+[ \t]*$")
_INCLUDE = re.compile(r"\{!>?[^{}\n]{0,500}?!\}|\{\*[^{}\n]{0,500}?\*\}")
_INCLUDE_LINE = re.compile(rf"^[ \t]*(?:{_INCLUDE.pattern})[ \t]*$")
_OPTION = re.compile(r"^[ \t]*:[\w-]+:(?:[ \t].*)?$")
_TARGET = re.compile(r"^[ \t]*\([\w.:-]+\)=[ \t]*$")
_ALERT = re.compile(r"^([ \t]*>[ \t]*)\[!(?:NOTE|TIP|IMPORTANT|WARNING|CAUTION)\][ \t]*$", re.IGNORECASE)
_ROLE = re.compile(r"\{([a-z][\w:.-]*)\}(`+)(.+?)\2")
_ROLE_TARGET = re.compile(r"^(.*?)\s*<[^<>]*>$")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# HTML elements docs use in Markdown; other <words> are text (List<String>, <your-token>).
_HTML_TAGS = ("a|abbr|article|aside|b|big|blockquote|br|button|center|cite|code|dd|del|details|dfn|div|dl|dt|em|figcaption|figure|font|"
              "footer|form|h[1-6]|header|hr|i|iframe|img|input|ins|kbd|label|li|main|mark|nav|ol|option|p|path|picture|"
              "pre|q|s|samp|section|select|small|source|span|strong|sub|summary|sup|svg|table|tbody|td|textarea|th|"
              "thead|tr|u|ul|var|video")
_SCRIPT = re.compile(r"^[ \t]*<(script|style)\b", re.IGNORECASE)  # a block whose content is code, not text
_TAG = re.compile(rf"</?((?i:{_HTML_TAGS}))(?:\s[^<>]{{0,2000}})?/?>")
_SPACE_TAGS = frozenset({"br", "img", "hr", "p", "div", "td", "th", "tr", "li", "ul", "ol", "table", "section",
                         "details", "summary", "figure"})
_ICON = re.compile(r":(?:material|fontawesome|octicons|simple)-[\w-]+:")
_BRACES = re.compile(r"[ \t]*\{([^{}\n]{1,200})\}")
_ATTR_TOKEN = r"""(?:[#.][\w:-]+|[\w-]+=(?:"[^"]*"|'[^']*'|[^\s"'}]+))"""
_ATTR_LIST = re.compile(rf"""^(?::[^{{}}]*|[ \t]*{_ATTR_TOKEN}(?:[ \t]+(?:{_ATTR_TOKEN}|[\w-]+))*[ \t]*)$""")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")

# MyST/Sphinx directives whose body is code, or that only include, list or draw something.
_CODE_DIRECTIVES = frozenset({"code", "code-block", "code-cell", "sourcecode"})
_DROP_DIRECTIVES = frozenset({"include", "literalinclude", "toctree", "contents", "raw", "image", "mermaid",
                              "graphviz", "tableofcontents", "bibliography", "csv-table", "mdinclude"})
_PATH_ARGUMENT = frozenset({"figure"})  # the argument is a file, not text
# Terminal transcripts, which sites colour with HTML (FastAPI's <font color=...>): the tags go.
_TRANSCRIPTS = frozenset({"console", "shell-session", "terminal"})


def read_markdown(text: str, source: str = "") -> tuple[str, dict[str, Any]]:
    """``(text, metadata)`` of a Markdown file: front matter removed into metadata, site markup
    removed from the text (see the module docstring). ``source`` names the file in log messages."""
    metadata, body = split_front_matter(text, source)
    return strip_markup(body), metadata


def clean_heading(title: str) -> str:
    """A heading's text without anchors, attribute lists, tags, comments or icons."""
    return _inline(title).strip()


# --------------------------------------------------------------------------- block markup


def strip_markup(text: str) -> str:
    """``text`` without the site markup of the module docstring; code blocks are kept as they are."""
    lines = _Cleaner().clean(text.split("\n"), 0)
    return "\n".join(lines).strip("\n") + ("\n" if lines and text.endswith("\n") else "")


def _indent(line: str) -> int:
    """The columns of ``line``'s leading whitespace, a tab counting 4."""
    width = 0
    for char in line:
        if char == " ":
            width += 1
        elif char == "\t":
            width += 4 - width % 4
        else:
            break
    return width


def _dedent(line: str, columns: int) -> str:
    """``line`` without up to ``columns`` columns of leading whitespace."""
    width, i = 0, 0
    while i < len(line) and width < columns and line[i] in " \t":
        width += 1 if line[i] == " " else 4 - width % 4
        i += 1
    return line[i:]


def _indented_end(lines: list[str], start: int, indent: int) -> int:
    """The end of the block of lines from ``start`` that are blank or indented past ``indent``;
    trailing blank lines are not part of it."""
    end = last = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
        if lines[end - 1].strip():
            last = end
    return last


class _Cleaner:
    """One pass over a container's lines: recognise a block construct at each line, else clean the
    line's inline markup. Containers (admonitions, tabs, directives) recurse into their bodies."""

    def __init__(self) -> None:
        self._closers: dict[int, int] = {}  # id of a container's lines -> index of its last bare ":::"

    def _last_colon_closer(self, lines: list[str]) -> int:
        """So that a page of mkdocstrings lines (no closer) costs one scan, not one per line."""
        if id(lines) not in self._closers:
            bare = (j for j in range(len(lines) - 1, -1, -1) if (c := _COLON.match(lines[j])) and not c[3])
            self._closers[id(lines)] = next(bare, -1)
        return self._closers[id(lines)]

    def clean(self, lines: list[str], depth: int) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            handled = self._block(lines, i, depth, out) if depth < _MAX_DEPTH and line.strip() else None
            if handled is not None:
                i = handled
                continue
            cleaned = _inline(line).rstrip() if line.strip() else ""
            if cleaned.strip() or not line.strip():
                self._emit(out, cleaned if cleaned.strip() else "")
            i += 1
        return out

    @staticmethod
    def _emit(out: list[str], line: str) -> None:
        """Append ``line``; a blank line after a blank line adds nothing (removed markup leaves gaps)."""
        if line or not out or out[-1]:
            out.append(line)

    def _block(self, lines: list[str], i: int, depth: int, out: list[str]) -> int | None:
        """The index after the block construct at ``lines[i]`` (its cleaned text added to ``out``),
        or None when the line starts none."""
        line = lines[i]
        if (m := _FENCE.match(line)) is not None:
            return self._fence(lines, i, m, depth, out)
        if _SNIPPET_BLOCK.match(line):
            end = next((j for j in range(i + 1, len(lines)) if _SNIPPET_BLOCK.match(lines[j])), None)
            return i + 1 if end is None else end + 1
        if _SNIPPET.match(line) or _INCLUDE_LINE.match(line) or _TARGET.match(line) or _RST_TARGET.match(line):
            return i + 1
        if (m := _ADMONITION.match(line) or _TAB.match(line)) is not None:
            end = _indented_end(lines, i + 1, _indent(line))
            body = [_dedent(x, _indent(line) + 4) if x.strip() else "" for x in lines[i + 1 : end]]
            label = (m[2] or m[3] or "").strip()
            self._container(out, m[1] + label, body, depth, label_needs_body=line.lstrip().startswith("==="))
            return end
        if (m := _BLOCK.match(line)) is not None and m[3]:
            return self._slash_block(lines, i, m, depth, out)
        if (m := _COLON.match(line)) is not None and m[3]:
            return self._colon_fence(lines, i, m, depth, out)
        if (m := _RST.match(line)) is not None:
            return self._rst(lines, i, m, depth, out)
        if (m := _SCRIPT.match(line)) is not None:
            closing = f"</{m[1].lower()}>"
            end = next((j for j in range(i, len(lines)) if closing in lines[j].lower()), len(lines) - 1)
            return end + 1
        if "<!--" in line and "-->" not in line.split("<!--", 1)[1] and not _in_code_span(line, line.index("<!--")):
            return self._comment(lines, i, out)
        return None

    def _container(self, out: list[str], label: str, body: list[str], depth: int, *,
                   label_needs_body: bool = False) -> None:
        """A container's cleaned body, after its label as a line of text (a tab's only if it has a body)."""
        cleaned = self.clean(body, depth + 1)
        label_text = _inline(label).rstrip()
        if label_text.strip() and (not label_needs_body or any(x.strip() for x in cleaned)):
            self._emit(out, label_text)
        for x in cleaned:
            self._emit(out, x)

    def _fence(self, lines: list[str], i: int, m: re.Match[str], depth: int, out: list[str]) -> int:
        indent, fence, info = m[1], m[2], m[3]
        end = _fence_end(lines, i + 1, fence)
        body = lines[i + 1 : end]
        after = min(end + 1, len(lines))
        directive = _DIRECTIVE.match(info)
        if directive is None:  # a code block: kept as it is, but for include lines (expanded before it is read)
            kept = [x for x in body if not (_SNIPPET.match(x) or _INCLUDE_LINE.match(x))]
            if info.split(" ", 1)[0].lower() in _TRANSCRIPTS:
                kept = [html.unescape(_TAG.sub("", x)) for x in kept]
            if kept or len(kept) == len(body):
                out.extend([line for line in lines[i:i + 1]] + kept + lines[end:after])
            return after
        name, argument = directive[1].lower(), directive[2].strip()
        body = [_dedent(x, _indent(indent)) for x in body]
        self._directive(out, indent, name, argument, body, depth)
        return after

    def _directive(self, out: list[str], indent: str, name: str, argument: str, body: list[str],
                   depth: int) -> None:
        """A MyST/Sphinx directive: code as a code fence, includes dropped, others' bodies kept."""
        body = _drop_options(body)
        if name in _DROP_DIRECTIVES or name.startswith("auto"):
            return
        if name in _CODE_DIRECTIVES:
            fence = "`" * max(3, 1 + max((len(f[2]) for x in body if (f := _FENCE.match(x))), default=0))
            out.extend([f"{indent}{fence}{argument}", *(indent + x if x else x for x in body), indent + fence])
            return
        label = "" if name in _PATH_ARGUMENT else argument
        self._container(out, indent + label, body, depth)

    def _slash_block(self, lines: list[str], i: int, m: re.Match[str], depth: int, out: list[str]) -> int:
        """pymdownx blocks: ``/// note | Title`` ... ``///``; options indented right under the header."""
        count, end, nested = len(m[2]), i + 1, []
        while end < len(lines):
            if (f := _FENCE.match(lines[end])) is not None:
                end = min(_fence_end(lines, end + 1, f[2]) + 1, len(lines))
                continue
            if (b := _BLOCK.match(lines[end])) is not None:
                if b[3]:
                    nested.append(len(b[2]))
                elif len(b[2]) in nested:
                    del nested[nested.index(len(b[2])):]
                elif len(b[2]) == count:
                    break
            end += 1
        start = i + 1
        while start < end and lines[start].strip() and _indent(lines[start]) > _indent(lines[i]):
            start += 1  # the block's YAML options (type: warning, attrs: ...)
        body = [_dedent(x, _indent(m[1])) for x in lines[start:end]]
        if m[3].lower() not in ("html", "raw"):
            self._container(out, m[1] + (m[4] or ""), body, depth, label_needs_body=m[3].lower() == "tab")
        return min(end + 1, len(lines))

    def _colon_fence(self, lines: list[str], i: int, m: re.Match[str], depth: int, out: list[str]) -> int:
        """``:::{note} Title`` ... ``:::`` (MyST), ``::: warning`` (pandoc, Docusaurus); a ``:::``
        line with no closing one is mkdocstrings' ``::: package.name`` (and its indented options)."""
        if i >= self._last_colon_closer(lines):  # nothing after it can close it: an autodoc line
            return _indented_end(lines, i + 1, _indent(lines[i]))
        level, end = 1, i + 1
        while end < len(lines):
            if (f := _FENCE.match(lines[end])) is not None:
                end = min(_fence_end(lines, end + 1, f[2]) + 1, len(lines))
                continue
            if (c := _COLON.match(lines[end])) is not None:
                level += 1 if c[3] else -1
                if level == 0:
                    break
            end += 1
        if end >= len(lines):  # never closed: an autodoc line
            return _indented_end(lines, i + 1, _indent(lines[i]))
        info = m[3].strip()
        directive = _DIRECTIVE.match(info)
        if directive is not None:
            name, argument = directive[1].lower(), directive[2].strip()
        else:  # "::: warning Title", ":::tip", "::: {.note}"
            name, _, argument = info.lstrip("{.").rstrip("}").partition(" ")
        body = [_dedent(x, _indent(m[1])) for x in lines[i + 1 : end]]
        self._directive(out, m[1], name.lower(), argument.strip(), body, depth)
        return end + 1

    def _rst(self, lines: list[str], i: int, m: re.Match[str], depth: int, out: list[str]) -> int:
        """``.. note:: text`` and its indented body (Sphinx directives, also inside MyST's eval-rst)."""
        end = _indented_end(lines, i + 1, _indent(lines[i]))
        body = lines[i + 1 : end]
        inner = min((_indent(x) for x in body if x.strip()), default=0)
        body = [_dedent(x, inner) if x.strip() else "" for x in body]
        self._directive(out, m[1], m[2].lower(), (m[3] or "").strip(), body, depth)
        return end

    def _comment(self, lines: list[str], i: int, out: list[str]) -> int:
        """An HTML comment over several lines: the text before and after it stays."""
        before = lines[i].split("<!--", 1)[0]
        end = next((j for j in range(i + 1, len(lines)) if "-->" in lines[j]), None)
        after = "" if end is None else lines[end].split("-->", 1)[1]
        for part in (before, after):
            if part.strip():
                self._emit(out, _inline(part).rstrip())
        return len(lines) if end is None else end + 1


def _fence_end(lines: list[str], start: int, fence: str) -> int:
    """The index of the line closing a fence opened with ``fence`` (same character, at least as many,
    nothing after), or ``len(lines)``: an unclosed fence runs to the end of its container. Inside a
    directive, nested fences with an info string (or shorter) open and close on their own."""
    nested: list[str] = []
    for j in range(start, len(lines)):
        m = _FENCE.match(lines[j])
        if m is None or m[2][0] != fence[0] and not nested:
            continue
        top = nested[-1] if nested else fence
        if m[2][0] == top[0] and not m[3] and len(m[2]) >= len(top):
            if not nested:
                return j
            nested.pop()
        elif m[3] or len(m[2]) < len(fence):
            nested.append(m[2])
    return len(lines)


def _drop_options(body: list[str]) -> list[str]:
    """A directive body without its leading options (``:class: tip`` lines, or a ``---`` YAML block)."""
    start = 0
    if body and body[0].strip() == "---":
        close = next((j for j in range(1, len(body)) if body[j].strip() == "---"), None)
        start = 0 if close is None else close + 1
    while start < len(body) and _OPTION.match(body[start]):
        start += 1
    return body[start:]


# --------------------------------------------------------------------------- inline markup


def _in_code_span(line: str, pos: int) -> bool:
    return any(m.start() <= pos < m.end() for m in _CODE_SPAN.finditer(line))


def _inline(line: str) -> str:
    """One line without inline markup; code spans kept as they are (a MyST role's content too)."""
    if not any(c in line for c in "{<:[!"):
        return line
    line = _ROLE.sub(_role_text, line)
    parts, pos = [], 0
    for span in _CODE_SPAN.finditer(line):
        parts += [_inline_text(line[pos : span.start()]), span[0]]
        pos = span.end()
    parts.append(_inline_text(line[pos:]))
    line = "".join(parts)
    return _ALERT.sub(lambda m: m[1].rstrip(), line)


def _role_text(m: re.Match[str]) -> str:
    """``{ref}`Text <label>``` -> ``Text``; ``{py:class}`~a.B``` -> ```B```."""
    content = m[3].strip()
    if (target := _ROLE_TARGET.match(content)) is not None and target[1]:
        content = target[1]
    content = content.lstrip("~!")
    if m[1] in ("ref", "doc", "term", "numref", "abbr", "sub", "sup", "download", "cite"):
        return _ROLE_TARGET.sub(r"\1", content) if m[1] == "abbr" else content
    return f"`{content.rsplit('.', 1)[-1] if m[3].strip().startswith('~') else content}`"


def _inline_text(text: str) -> str:
    """Prose between code spans: comments, includes, attribute lists, tags and icons removed."""
    if "<" in text:
        text = _COMMENT.sub("", text)
        text = _TAG.sub(lambda m: " " if m[1].lower() in _SPACE_TAGS else "", text)
    if "{" in text:
        text = _INCLUDE.sub("", text)
        text = _BRACES.sub(lambda m: "" if _ATTR_LIST.match(m[1].strip()) else m[0], text)
    if ":" in text:
        text = _ICON.sub("", text)
    return text
