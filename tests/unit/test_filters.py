"""``ragkit.storage.filters``: parsing filter dicts, the row mask both legs apply, and ``--filter`` syntax."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.errors import FilterError
from ragkit.storage.filters import compile_filters, filter_mask, parse_cli_filter

RECORDS = [
    {"doc_id": "a", "source": "health/varroa.md", "type": "markdown", "page": None, "headings": ["Varroa", "Treatment"]},
    {"doc_id": "b", "source": "health/nosema.pdf", "type": "pdf", "page": 3, "headings": []},
    {"doc_id": "c", "source": "queens.md", "type": "markdown", "page": None, "headings": ["Queens"]},
    {"doc_id": "d", "source": "harvest.pdf", "type": "pdf", "page": 7, "date": "2024-05-01"},
]


def matching(filters: dict) -> list[str]:
    mask = filter_mask(filters, RECORDS)
    assert mask.dtype == np.bool_ and mask.shape == (len(RECORDS),)
    return [r["doc_id"] for r, keep in zip(RECORDS, mask) if keep]


@pytest.mark.parametrize("filters, expected", [
    ({}, ["a", "b", "c", "d"]),
    ({"type": "pdf"}, ["b", "d"]),
    ({"type": {"eq": "pdf"}}, ["b", "d"]),
    ({"type": {"ne": "pdf"}}, ["a", "c"]),
    ({"doc_id": {"in": ["a", "d", "zz"]}}, ["a", "d"]),
    ({"doc_id": {"nin": ["a", "d"]}}, ["b", "c"]),
    ({"page": {"gte": 3, "lt": 7}}, ["b"]),
    ({"page": {"gt": 3}}, ["d"]),
    ({"page": {"lte": 100}}, ["b", "d"]),  # None never satisfies a range
    ({"source": {"glob": "health/*"}}, ["a", "b"]),
    ({"source": {"glob": "*.md"}}, ["a", "c"]),  # "*" also crosses "/"
    ({"headings": "Treatment"}, ["a"]),  # a list matches when any element does
    ({"headings": {"in": ["Queens", "Varroa"]}}, ["a", "c"]),
    ({"type": "pdf", "page": {"gt": 5}}, ["d"]),  # keys AND together
    ({"date": {"gte": "2024-01-01"}}, ["d"]),  # ISO dates compare as strings
    ({"source": {"gte": "h", "lt": "i"}}, ["a", "b", "d"]),  # text ranges compare as text (a field of strings)
])
def test_filters_select_the_matching_records(filters: dict, expected: list[str]) -> None:
    assert matching(filters) == expected


def test_an_unknown_field_names_the_known_ones() -> None:
    with pytest.raises(FilterError, match=r"unknown filter field 'sorce'.*doc_id.*source"):
        filter_mask({"sorce": "x"}, RECORDS)


def test_an_empty_index_accepts_any_field() -> None:
    assert filter_mask({"anything": 1}, []).shape == (0,)


@pytest.mark.parametrize("filters, complaint", [
    # issue 14: these matched nothing, silently
    ({"page": {"gt": "3"}}, r"filter on 'page': 'gt' needs a number \('page' holds numbers\), got '3' \(str\); "
                            r"for a number write 3 without quotes"),
    ({"page": {"gte": "abc"}}, r"filter on 'page': 'gte' needs a number \('page' holds numbers\), got 'abc' \(str\)"),
    ({"page": {"lt": None}}, r"'lt' needs a number, an ISO date \(e.g. 2024-05-01\) or text, got None \(NoneType\)"),
    ({"page": {"lt": float("nan")}}, "'lt' needs a number, an ISO date"),
    ({"date": {"gte": 2024}}, r"filter on 'date': 'gte' 2024 is a number, but 'date' holds text values"),
    ({"page": {"gte": "2024-01-01"}}, r"'gte' needs a number \('page' holds numbers\), got '2024-01-01'"),
])
def test_a_range_bound_of_the_wrong_kind_is_a_filter_error(filters: dict, complaint: str) -> None:
    with pytest.raises(FilterError, match=complaint):
        filter_mask(filters, RECORDS)


def test_a_non_numeric_cli_range_names_field_value_and_type() -> None:
    field, condition = parse_cli_filter("page>=abc")
    with pytest.raises(FilterError, match=r"filter on 'page': 'gte' needs a number .*got 'abc' \(str\)"):
        filter_mask({field: condition}, RECORDS)


@pytest.mark.parametrize("filters, complaint", [
    ({"type": {"like": "pdf"}}, "unknown filter operator 'like'"),
    ({"type": {"in": "pdf"}}, "'in' needs a list"),
    ({"type": {"nin": 3}}, "'nin' needs a list"),
    ({"source": {"glob": 3}}, "'glob' needs a string"),
    ({1: "x"}, "field names must be strings"),
    (["type", "pdf"], "filters must be a dict"),
])
def test_malformed_filters_are_filter_errors(filters, complaint: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FilterError, match=complaint):
        compile_filters(filters)


@pytest.mark.parametrize("expression, item", [
    ("type=pdf", ("type", "pdf")),
    ("page=3", ("page", 3)),
    ("score=0.5", ("score", 0.5)),
    ("page>=2", ("page", {"gte": 2})),
    ("page<=2", ("page", {"lte": 2})),
    ("page>2", ("page", {"gt": 2})),
    ("page<2", ("page", {"lt": 2})),
    ("type!=pdf", ("type", {"ne": "pdf"})),
    ("source~health/*", ("source", {"glob": "health/*"})),
    ("source~2024*", ("source", {"glob": "2024*"})),  # a glob stays text
    ("page=1,2,x", ("page", {"in": [1, 2, "x"]})),
    (" type = pdf ", ("type", "pdf")),
])
def test_cli_filter_expressions(expression: str, item: tuple) -> None:
    assert parse_cli_filter(expression) == item


@pytest.mark.parametrize("expression", ["type", "=pdf", ""])
def test_bad_cli_filter_expressions_say_what_is_accepted(expression: str) -> None:
    with pytest.raises(FilterError, match="key=value"):
        parse_cli_filter(expression)
