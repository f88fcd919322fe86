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
match nothing. So is a range bound that is not a number or an ISO date (``"2"``, ``"abc"``),
and a bound of another kind than the field holds (a number against dates).
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ragkit.errors import FilterError

Filters = Mapping[str, Any]
OPERATORS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "glob")
RANGES = ("gt", "gte", "lt", "lte")


def _kind(value: Any) -> str | None:
    """What a range compares a value as: "number", "text", or None (never compared)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return "number"
    return "text" if isinstance(value, str) else None


def _check_range_bound(field: str, op: str, expected: Any) -> None:
    """A range compares numbers with numbers and text (ISO dates included) with text: nothing else."""
    if _kind(expected) == "number" and not math.isnan(expected) or isinstance(expected, str):
        return
    raise FilterError(
        f"filter on {field!r}: {op!r} needs a number, an ISO date (e.g. 2024-05-01) or text, "
        f"got {expected!r} ({type(expected).__name__})"
    )


def _predicate(field: str, op: str, expected: Any) -> Callable[[Any], bool]:
    if op in ("in", "nin") and (isinstance(expected, (str, bytes)) or not isinstance(expected, Sequence)):
        raise FilterError(f"filter on {field!r}: {op!r} needs a list of values, got {expected!r}")
    if op == "glob" and not isinstance(expected, str):
        raise FilterError(f"filter on {field!r}: 'glob' needs a string pattern, got {expected!r}")
    if op in RANGES:
        _check_range_bound(field, op, expected)

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
        except TypeError:  # a record of another kind than the rest (filter_mask checks the field's kind)
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
    check_range_kinds(filters, record_kinds(records))
    mask = np.ones(len(records), dtype=bool)
    for field, test in compiled:
        for i, record in enumerate(records):
            if mask[i]:
                value = record.get(field)
                mask[i] = any(test(v) for v in value) if isinstance(value, list) else test(value)
    return mask


def check_range_kinds(filters: Filters, kinds_of: Callable[[str], set[str]]) -> None:
    """A range bound must be of a kind the field holds (``kinds_of(field)``: "number" and/or "text"),
    else it would silently match nothing: ``{"page": {"gte": "2"}}`` on a number field is an error."""
    for field, condition in filters.items():
        bounds = [(op, v) for op, v in condition.items() if op in RANGES] if isinstance(condition, Mapping) else []
        kinds = kinds_of(field) if bounds else set()
        for op, bound in bounds:
            if not kinds or _kind(bound) in kinds:
                continue
            if _kind(bound) == "text" and kinds == {"number"}:
                hint = f"; for a number write {bound} without quotes" if _number_or_text(bound) is not bound else ""
                raise FilterError(f"filter on {field!r}: {op!r} needs a number ({field!r} holds numbers), "
                                  f"got {bound!r} ({type(bound).__name__}){hint}")
            holds = " and ".join(sorted(kinds))
            raise FilterError(
                f"filter on {field!r}: {op!r} {bound!r} is {'a number' if _kind(bound) == 'number' else 'text'}, "
                f"but {field!r} holds {holds} values; give a {holds.replace('text', 'date string')} bound"
            )


def record_kinds(records: Sequence[Mapping[str, Any]]) -> Callable[[str], set[str]]:
    """``kinds_of`` for :func:`check_range_kinds` from the records themselves (list elements count)."""

    def kinds_of(field: str) -> set[str]:
        kinds: set[str] = set()
        for record in records:
            value = record.get(field)
            kinds.update(k for v in (value if isinstance(value, list) else [value]) if (k := _kind(v)))
        return kinds

    return kinds_of


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
            value = kind(raw)
        except ValueError:
            continue
        return raw if value != value else value  # "nan" stays text: NaN equals and orders nothing
    return raw
