"""Metadata filters, evaluated to a boolean row mask that both retrieval legs apply before their top-k cut.

A filter is a dict; several keys must all hold (AND)::

    {"source": "health/varroa.md"}                        equality
    {"type": {"in": ["markdown", "pdf"]}}                  membership ("nin": not in)
    {"page": {"gte": 2, "lt": 5}}                          ranges: gt, gte, lt, lte (numbers, ISO dates)
    {"source": {"glob": "health/*"}}                      path glob (fnmatch; "*" also crosses "/")
    {"title": {"ne": "Glossary"}}                          inequality

Fields are ``doc_id``, ``chunk_id`` and any chunk metadata key (``source``,
``title``, ``type``, ``page``, ``headings``, your own). A list-valued field
(``headings``) matches when any element matches. A field no chunk has is a
:class:`~ragkit.errors.FilterError`, since a typo would otherwise silently
match nothing.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ragkit.errors import FilterError

Filters = Mapping[str, Any]
OPERATORS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "glob")


def _predicate(field: str, op: str, expected: Any) -> Callable[[Any], bool]:
    if op in ("in", "nin") and (isinstance(expected, (str, bytes)) or not isinstance(expected, Sequence)):
        raise FilterError(f"filter on {field!r}: {op!r} needs a list of values, got {expected!r}")
    if op == "glob" and not isinstance(expected, str):
        raise FilterError(f"filter on {field!r}: 'glob' needs a string pattern, got {expected!r}")

    def compare(value: Any) -> bool:
        try:
            if op == "eq":
                return bool(value == expected)
            if op == "ne":
                return bool(value != expected)
            if op == "in":
                return value in expected
            if op == "nin":
                return value not in expected
            if op == "glob":
                return isinstance(value, str) and fnmatch.fnmatchcase(value, expected)
            if value is None:
                return False
            return bool(
                {"gt": value > expected, "gte": value >= expected, "lt": value < expected, "lte": value <= expected}[op]
            )
        except TypeError:  # comparing e.g. a str with an int: not a match
            return False

    return compare


def compile_filters(filters: Filters) -> list[tuple[str, Callable[[Any], bool]]]:
    """Parse a filter dict into ``(field, predicate)`` pairs, validating operators."""
    if not isinstance(filters, Mapping):
        raise FilterError(f"filters must be a dict of field -> value or {{operator: value}}, got {filters!r}")
    compiled = []
    for field, condition in filters.items():
        if not isinstance(field, str):
            raise FilterError(f"filter field names must be strings, got {field!r}")
        if isinstance(condition, Mapping):
            for op, expected in condition.items():
                if op not in OPERATORS:
                    raise FilterError(f"unknown filter operator {op!r} on {field!r}; valid: {', '.join(OPERATORS)}")
                compiled.append((field, _predicate(field, op, expected)))
        else:
            compiled.append((field, _predicate(field, "eq", condition)))
    return compiled


def filter_mask(filters: Filters, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Boolean mask of the records (chunk metadata plus doc_id/chunk_id) that satisfy every condition."""
    compiled = compile_filters(filters)
    known: set[str] = set()
    for record in records:
        known.update(record)
    for field, _ in compiled:
        if field not in known and records:
            raise FilterError(f"unknown filter field {field!r}; fields in this index: {', '.join(sorted(known))}")
    mask = np.ones(len(records), dtype=bool)
    for field, test in compiled:
        for i, record in enumerate(records):
            if mask[i]:
                value = record.get(field)
                mask[i] = any(test(v) for v in value) if isinstance(value, list) else test(value)
    return mask


def parse_cli_filter(expression: str) -> tuple[str, Any]:
    """``"key=value"`` (or ``key>=3``, ``key<5``, ``key~glob*``) from the command line into a filter item.

    Values that look like numbers become numbers (also inside ``key=a,b`` lists), except for globs.
    """
    for token, op in ((">=", "gte"), ("<=", "lte"), ("!=", "ne"), ("~", "glob"), (">", "gt"), ("<", "lt"), ("=", "eq")):
        if token in expression:
            key, raw = expression.split(token, 1)
            key = key.strip()
            if not key:
                break
            raw = raw.strip()
            if op == "glob":
                return key, {"glob": raw}
            if op == "eq" and "," in raw:
                return key, {"in": [_number_or_text(v.strip()) for v in raw.split(",")]}
            value = _number_or_text(raw)
            return key, value if op == "eq" else {op: value}
    raise FilterError(f"bad --filter {expression!r}; use key=value, key!=value, key>=n, key<n or key~glob")


def _number_or_text(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw
