"""ragkit filters as Milvus boolean expressions, as far as Milvus can say them exactly.

Milvus compares JSON values by its own rules (mixed kinds, LIKE wildcards in a glob), so each
condition compiles to an expression and a flag: exact, or a superset that ragkit's own predicates
(:func:`ragkit.storage.filters.compile_filters`) then check row by row (see ``MilvusView``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from ragkit.storage.filters import Filters

# metadata copied into typed, nullable columns of the chunk collection (faster to filter than JSON)
SCALARS = {"source": "str", "type": "str", "title": "str", "page": "int"}
# metadata keys that may appear inside metadata["..."]; others are checked client-side
SAFE_KEY = re.compile(r"^[\w .:/-]+$")
NOTHING = "pk < 0"  # matches no row (chunk keys are non-negative)
EVERYTHING = "pk >= 0"

_NUMBERS = {"int", "float"}
_COMPARE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def literal(value: Any) -> str | None:
    """A Milvus expression literal, or None where the value has none (lists, dicts, NaN, newlines)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return None if ("\n" in value or "\r" in value) else f'"{escaped}"'
    return None


def value_kind(value: Any) -> str:
    """The kind the field catalogue records for a metadata value: null, bool, int, float, str, list, dict."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "int" if isinstance(value, int) else "float"
    if isinstance(value, str):
        return "str"
    return "list" if isinstance(value, (list, tuple)) else "dict"


def passes(value: Any, test: Any) -> bool:
    """ragkit's filter semantics: a list-valued field matches when any element does."""
    return any(test(v) for v in value) if isinstance(value, list) else bool(test(value))


def pk_in(pks: list[int]) -> str:
    return f"pk in [{', '.join(map(str, pks))}]" if pks else NOTHING


def translate(filters: Filters, fields: Mapping[str, set[str]]) -> tuple[str, Filters]:
    """The filter as one expression, and the conditions it only approximates (checked client-side).

    ``fields`` maps each metadata key to the value kinds stored under it (the field catalogue).
    """
    exprs, post = [], {}
    for name, cond in filters.items():
        items = cond.items() if isinstance(cond, Mapping) else [("eq", cond)]
        for op, value in items:
            expr, exact = condition(name, op, value, fields.get(name, set()))
            if expr:
                exprs.append(f"({expr})")
            if not exact:
                post.setdefault(name, {})[op] = value
    return " and ".join(exprs) or EVERYTHING, post


def reference(name: str, kinds: set[str], value_kinds: set[str]) -> tuple[str | None, bool]:
    """The Milvus field expression for a filter field, and whether it can be null."""
    if name in ("doc_id", "chunk_id"):
        return name, False
    column = SCALARS.get(name)
    if column and kinds <= {column, "null"} and value_kinds <= {column}:
        return name, True
    return (f'metadata["{name}"]', True) if SAFE_KEY.match(name) else (None, True)


def same_kind(kinds: set[str], value_kinds: set[str]) -> bool:
    """Whether Milvus compares these exactly as Python would (one kind each side, numbers alike)."""
    kinds = kinds - {"null"}
    if kinds <= _NUMBERS and value_kinds <= _NUMBERS:
        return True
    return len(kinds) <= 1 and kinds | value_kinds <= {"str"} or kinds == value_kinds == {"bool"}


def condition(name: str, op: str, value: Any, kinds: set[str]) -> tuple[str | None, bool]:
    """One filter condition as a Milvus expression, and whether it is exact (else a superset or None)."""
    values = list(value) if op in ("in", "nin") else [value]
    literals = [literal(v) for v in values]
    value_kinds = {value_kind(v) for v in values}
    ref, nullable = reference(name, kinds, value_kinds)
    if ref is None or None in literals:
        return None, False
    if op in ("in", "nin") and not values:
        return (NOTHING if op == "in" else EVERYTHING), True
    if "list" in kinds or "dict" in kinds:
        if kinds - {"null"} == {"list"} and op in ("eq", "in"):
            return f"json_contains_any({ref}, [{', '.join(literals)}])", True  # type: ignore[arg-type]
        return None, False
    if not same_kind(kinds, value_kinds) and op != "glob":
        return None, False  # mixed kinds: Milvus and Python may disagree, so check every row client-side
    if op in ("eq", "ne", "in", "nin") or op in _COMPARE:
        return _comparison(ref, op, literals, nullable), True  # type: ignore[arg-type]
    if not isinstance(value, str) or any(c in value for c in "[]\\") or not kinds <= {"str", "null"}:
        return None, False  # glob with a character class or escape: checked client-side
    pattern = value.replace("*", "%").replace("?", "_")
    # LIKE's "_" and "%" also match where the glob wanted the character itself: a superset then
    return f"{ref} like {literal(pattern)}", "%" not in value and "_" not in value


def _comparison(ref: str, op: str, literals: list[str], nullable: bool) -> str:
    """eq/ne/in/nin/gt/gte/lt/lte; "not equal" also holds for a missing value (as in Python)."""
    is_null = f"{ref} is null or " if nullable else ""
    column = not ref.startswith("metadata[")  # JSON paths take no "in [...]" lists
    if op == "eq":
        return f"{ref} == {literals[0]}"
    if op == "ne":
        return f"{is_null}{ref} != {literals[0]}"
    if op == "in":
        return f"{ref} in [{', '.join(literals)}]" if column else " or ".join(f"{ref} == {v}" for v in literals)
    if op == "nin":
        body = f"{ref} not in [{', '.join(literals)}]" if column else " and ".join(f"{ref} != {v}" for v in literals)
        return f"{is_null}({body})"
    return f"{ref} {_COMPARE[op]} {literals[0]}"
