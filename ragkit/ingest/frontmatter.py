"""Front matter: the YAML (``---``) or TOML (``+++``) block at the start of a Markdown file.

:func:`split_front_matter` removes it from the text and gives its simple keys as metadata
(scalars, lists of scalars, dates as ISO text); ``title`` becomes the document's title. Text that
does not parse to a mapping is not front matter (a page may start with a ``---`` rule) and stays.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
from typing import Any

__all__ = ["RESERVED_KEYS", "split_front_matter"]

logger = logging.getLogger(__name__)

# Metadata the loader and chunker own: front matter never overrides them.
RESERVED_KEYS = frozenset({"source", "type", "pages", "outline", "headings", "page", "page_end",
                           "doc_id", "chunk_id"})
_MAX_LIST = 1000  # elements kept of one front matter list
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TITLE_MARKUP = re.compile(r"[ \t]*\{[ \t]*[:#.][^{}\n]{0,200}\}|</?[A-Za-z][\w-]{0,30}(?:\s[^<>]{0,2000})?/?>")


def split_front_matter(text: str, source: str = "") -> tuple[dict[str, Any], str]:
    """``(metadata, rest)``: YAML (``---`` ... ``---``/``...``) or TOML (``+++`` ... ``+++``) front
    matter at the start of ``text``. Text that does not parse to a mapping is not front matter
    (a document may start with a ``---`` rule) and is returned unchanged with ``{}``."""
    first, _, rest = text.partition("\n")
    marker = first.rstrip()
    if marker not in ("---", "+++"):
        return {}, text
    closing = ("---", "...") if marker == "---" else ("+++",)
    pos = 0
    while True:
        end = rest.find("\n", pos)
        line = rest[pos:] if end < 0 else rest[pos:end]
        if line.rstrip() in closing:
            break
        if end < 0:
            return {}, text  # never closed: a rule, not front matter
        pos = end + 1
    raw, after = rest[:pos], "" if end < 0 else rest[end + 1 :]
    data = _parse_front_matter(raw, marker, source)
    if data is None:
        return {}, text
    return _front_metadata(data), after


def _parse_front_matter(raw: str, marker: str, source: str) -> dict[str, Any] | None:
    if not raw.strip():
        return {}
    try:
        data = _load_yaml(raw) if marker == "---" else _load_toml(raw)
    except ImportError as exc:  # pragma: no cover - Python 3.10 without tomli
        logger.warning("%s: TOML front matter removed unread (%s)", source, exc)
        return {}
    except _Unparsable as exc:  # not front matter after all
        logger.warning("%s: front matter does not parse (%s); kept as text", source, exc)
        return None
    return data if isinstance(data, dict) else None


class _Unparsable(Exception):
    """Front matter that is not valid YAML or TOML."""


def _load_yaml(raw: str) -> Any:
    # PyYAML comes with transformers and huggingface_hub (sentence-transformers needs both), and
    # safe_load builds plain values only; imported here: only files with front matter pay for it.
    import yaml

    try:
        return yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:  # ValueError: a bad date
        raise _Unparsable(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def _load_toml(raw: str) -> Any:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(raw)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise _Unparsable(f"{type(exc).__name__}: {exc}") from None


def _front_metadata(data: dict[Any, Any]) -> dict[str, Any]:
    """The front matter keys that fit metadata: scalars and lists of scalars (dates as ISO text);
    nested mappings are dropped, as are the keys the loader owns."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        key = _CONTROL.sub("", str(key)).strip()
        if not key or key in RESERVED_KEYS:
            continue
        if isinstance(value, (list, tuple)):
            items = [_scalar(v) for v in value[:_MAX_LIST]]
            value = [v for v in items if v is not None]
        else:
            value = _scalar(value)
        if value is not None:
            out[key] = value
    if "title" in out:
        title = _TITLE_MARKUP.sub("", str(out["title"])).strip() if not isinstance(out["title"], list) else ""
        if title:
            out["title"] = title
        else:
            del out["title"]
    return out


def _scalar(value: Any) -> str | int | float | bool | None:
    if isinstance(value, (bool, int)) or isinstance(value, float) and math.isfinite(value):
        return value  # NaN and infinities are no JSON values
    if isinstance(value, (_dt.date, _dt.time)):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, str):
        return _CONTROL.sub("", value)
    return None
