"""Tests for `ragkit prompt`: the rendered prompt, or its chat messages as JSON, on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit import Document, Index
from ragkit.cli.commands import main

SAMPLE_EXAMPLES = Path(__file__).resolve().parents[2] / "samples" / "examples.jsonl"
DOCS = [
    Document("varroa", "Varroa mites are external parasites of honey bees. Count them with an alcohol wash.",
             {"source": "health/varroa.md", "title": "Varroa"}),
    Document("afb", "American foulbrood is a bacterial disease of honey bee larvae caused by Paenibacillus larvae.",
             {"source": "health/afb.md", "title": "American foulbrood"}),
    Document("harvest", "Harvest honey when most cells of a frame are capped, then spin the frames in an extractor.",
             {"source": "seasons/harvest.md", "title": "Harvest"}),
]
QUESTION = "What causes American foulbrood?"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli_prompt") / "kb.ragkit"
    with Index(path, show_progress=False) as ix:
        ix.add(DOCS)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["prompt", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_the_rendered_prompt(index_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, QUESTION, "--index", index_dir, "-k", "2")
    assert code == 0, err
    assert out.startswith("System:\n")
    assert "[1] American foulbrood" in out and "caused by Paenibacillus larvae" in out
    assert "[2] " not in out  # min_score "auto" (default): the varroa passage does not answer it
    assert "left out passage varroa#0: relevance" in err
    assert out.rstrip().endswith(f"Question: {QUESTION}")
    code, out, err = run(capsys, QUESTION, "--index", index_dir, "-k", "2", "--min-score", "0")
    assert code == 0 and "[2] " in out and "[3] " not in out  # a number replaces "auto"


def test_messages_json(index_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, QUESTION, "--index", index_dir, "-k", "1", "--messages", "--template", "chat")
    assert code == 0
    messages = json.loads(out)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Paenibacillus larvae" in messages[0]["content"]  # the chat template puts context in the system turn
    assert messages[1]["content"] == QUESTION


def test_examples_filters_and_budget(index_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "How do I count mites?", "--index", index_dir, "--examples", str(SAMPLE_EXAMPLES),
                       "--num-examples", "1", "--filter", "source=health/varroa.md")
    assert code == 0
    assert "Examples of good answers" in out and out.count("\nQuestion: ") == 2  # one example + the question
    assert "alcohol wash" in out and "Paenibacillus" not in out

    code, out, err = run(capsys, QUESTION, "--index", index_dir, "-k", "3", "--max-tokens", "290",
                         "--reserve-tokens", "10")
    assert code == 0
    assert "left out passage" in err  # what did not fit is noted on stderr, stdout stays the prompt
    assert "[1] American foulbrood" in out


def test_errors(tmp_path: Path, index_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, QUESTION, "--index", str(tmp_path / "missing"))
    assert code == 2 and "no index at" in err
    code, _, err = run(capsys, QUESTION, "--index", index_dir, "--template", "nonexistent")
    assert code == 2 and "nonexistent" in err
