"""Tests for ragkit.datasets: BEIR folders, labelled JSONL files and query splits."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ragkit.evaluation.datasets import EvalDataset, load_beir, load_labelled_jsonl, split_queries
from ragkit.errors import ConfigError, DatasetError

SCIFACT = Path("/work/shared/data/scifact")


def _write_jsonl(path: Path, records: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _beir(tmp_path: Path, qrels_lines: list[str], corpus: list | None = None) -> Path:
    """A tiny BEIR folder: docs d1-d3, queries q1-q3, the given test qrels lines."""
    _write_jsonl(
        tmp_path / "corpus.jsonl",
        corpus
        or [
            {"_id": "d1", "title": "Alpha", "text": "first text"},
            {"_id": "d2", "title": "", "text": "second text"},
            {"_id": "d3", "title": "Gamma", "text": "third text"},
        ],
    )
    _write_jsonl(tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": f"question {i}"} for i in (1, 2, 3)])
    (tmp_path / "qrels").mkdir(exist_ok=True)
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels_lines))
    return tmp_path


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="SciFact data not present")
def test_load_scifact_test_split() -> None:
    ds = load_beir(SCIFACT, "test")
    assert len(ds.queries) == 300
    assert ds.corpus is not None and len(ds.corpus) == 5183
    assert sum(len(j) for j in ds.qrels.values()) == 339
    assert set(ds.qrels) == set(ds.queries)
    doc = ds.corpus["4983"]
    assert doc.text.startswith(doc.metadata["title"] + " ")
    assert doc.metadata["title"].startswith("Microstructural development")
    light = load_beir(SCIFACT, "test", corpus=False)
    assert light.corpus is None and light.qrels == ds.qrels


def test_beir_keeps_only_judged_queries_and_joins_title(tmp_path: Path) -> None:
    ds = load_beir(_beir(tmp_path, ["q1\td1\t1\n", "q1\td2\t2\n", "q3\td3\t0\n"]))
    assert ds.queries == {"q1": "question 1", "q3": "question 3"}  # q2 has no judgement
    assert ds.qrels == {"q1": {"d1": 1, "d2": 2}, "q3": {"d3": 0}}
    assert ds.corpus is not None
    assert ds.corpus["d1"].text == "Alpha first text"
    assert ds.corpus["d1"].metadata == {"title": "Alpha"}
    assert ds.corpus["d2"].text == "second text"  # no title, no leading space
    assert ds.name == f"{tmp_path.name}/test" and ds.qrels_key == "doc_id"


def test_beir_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    folder = _beir(tmp_path, ["q1\td1\t1\n"])
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": \n')
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2: malformed JSON"):
        load_beir(folder)


def test_beir_unknown_document_id_strict_and_lenient(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _beir(tmp_path, ["q1\td1\t1\n", "q2\tnope\t1\n"])
    with pytest.raises(DatasetError, match=r"test\.tsv:3: document id 'nope'"):
        load_beir(folder)
    with caplog.at_level(logging.WARNING, logger="ragkit.datasets"):
        ds = load_beir(folder, strict=False)
    assert ds.qrels == {"q1": {"d1": 1}} and set(ds.queries) == {"q1"}  # q2 lost its only judgement
    assert "dropped 1 judgement" in caplog.text and "nope" in caplog.text
    # Without the corpus there is nothing to check document ids against.
    assert load_beir(folder, corpus=False).qrels["q2"] == {"nope": 1}


def test_beir_unknown_query_id(tmp_path: Path) -> None:
    folder = _beir(tmp_path, ["q9\td1\t1\n"])
    with pytest.raises(DatasetError, match=r"test\.tsv:2: query id 'q9'"):
        load_beir(folder)


def test_beir_bad_qrels_lines_and_missing_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"test\.tsv:2: score must be an integer"):
        load_beir(_beir(tmp_path, ["q1\td1\thigh\n"]))
    with pytest.raises(DatasetError, match=r"test\.tsv:2: expected"):
        load_beir(_beir(tmp_path, ["q1\td1\n"]))
    with pytest.raises(DatasetError, match=r"conflicting grades"):
        load_beir(_beir(tmp_path, ["q1\td1\t1\n", "q1\td1\t2\n"]))
    with pytest.raises(DatasetError, match=r"available splits: \['test'\]"):
        load_beir(tmp_path, "dev")


def test_beir_missing_id_in_corpus(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:1: missing or invalid '_id'"):
        load_beir(_beir(tmp_path, ["q1\td1\t1\n"], corpus=[{"title": "t", "text": "x"}]))


def test_labelled_jsonl_doc_ids_with_grades(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    _write_jsonl(
        path,
        [
            {"question": "What is A?", "relevant_doc_ids": ["d1", "d2"], "grades": {"d1": 2}},
            {"id": "custom", "question": "What is B?", "relevant_doc_ids": ["d3"]},
        ],
    )
    ds = load_labelled_jsonl(path)
    assert ds.corpus is None and ds.qrels_key == "doc_id" and ds.name == "questions"
    assert ds.queries == {"q1": "What is A?", "custom": "What is B?"}
    assert ds.qrels == {"q1": {"d1": 2, "d2": 1}, "custom": {"d3": 1}}


def test_labelled_jsonl_source_paths_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    _write_jsonl(path, [{"question": "Where?", "relevant_source_paths": ["./docs/a.md", "docs\\b.md"]}])
    ds = load_labelled_jsonl(path)
    assert ds.qrels_key == "source"
    assert ds.qrels == {"q1": {"docs/a.md": 1, "docs/b.md": 1}}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "a", "relevant_doc_ids": ["d1"]}', "{not json"], r"q\.jsonl:2: malformed JSON"),
        (['{"question": "a"}'], r"q\.jsonl:1: give exactly one of"),
        (
            ['{"question": "a", "relevant_doc_ids": []}'],
            r"q\.jsonl:1: 'relevant_doc_ids' must be a non-empty",
        ),
        (['{"question": "", "relevant_doc_ids": ["d1"]}'], r"q\.jsonl:1: 'question'"),
        (
            [
                '{"question": "a", "relevant_doc_ids": ["d1"]}',
                '{"question": "b", "relevant_source_paths": ["x"]}',
            ],
            r"q\.jsonl:2: uses 'source' ids but earlier lines use 'doc_id'",
        ),
        (['{"question": "a", "relevant_doc_ids": ["d1"], "grades": {"d9": 2}}'], r"'grades' names 'd9'"),
        (
            ['{"id": "x", "question": "a", "relevant_doc_ids": ["d1"]}'] * 2,
            r"q\.jsonl:2: duplicate question id",
        ),
    ],
)
def test_labelled_jsonl_errors_name_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_labelled_jsonl(path)


def _dataset(n: int = 40) -> EvalDataset:
    queries = {f"q{i}": f"question {i}" for i in range(n)}
    return EvalDataset(corpus=None, queries=queries, qrels={q: {f"d{q}": 1} for q in queries}, name="toy")


def test_split_queries_is_deterministic_disjoint_and_complete() -> None:
    ds = _dataset()
    first, second = split_queries(ds, 0.25, seed=3)
    again = split_queries(ds, 0.25, seed=3)
    assert (again[0].queries, again[1].queries) == (first.queries, second.queries)
    assert len(first.queries) == 10 and len(second.queries) == 30
    assert set(first.queries).isdisjoint(second.queries)
    assert set(first.queries) | set(second.queries) == set(ds.queries)
    assert set(first.qrels) == set(first.queries) and set(second.qrels) == set(second.queries)
    assert first.name == "toy:a" and second.name == "toy:b"
    assert split_queries(ds, 0.25, seed=4)[0].queries != first.queries
    # The split depends on ids and seed, not on the order queries were loaded in.
    reordered = EvalDataset(None, dict(reversed(ds.queries.items())), ds.qrels, "toy")
    assert set(split_queries(reordered, 0.25, seed=3)[0].queries) == set(first.queries)


def test_split_queries_edges_and_bad_fraction() -> None:
    ds = _dataset(5)
    assert len(split_queries(ds, 0.0)[0].queries) == 0
    assert len(split_queries(ds, 1.0)[1].queries) == 0
    with pytest.raises(ConfigError, match="fraction"):
        split_queries(ds, 1.5)


def test_eval_dataset_validates() -> None:
    with pytest.raises(ConfigError, match="qrels_key"):
        EvalDataset(None, {"q": "x"}, {"q": {"d": 1}}, "n", qrels_key="path")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="no text"):
        EvalDataset(None, {}, {"q": {"d": 1}}, "n")
