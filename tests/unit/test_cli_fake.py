"""The ``ragkit`` command in-process, on an index built with the fake embedder (no model): the
issue-14 round of a new user's first session (prompt, search, eval, tune, info, errors)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from fakes import FakeEmbedder, open_fake_index
from ragkit.cli.commands import main

LONG = " ".join(f"Sentence {i} says how cookies are set with the Set-Cookie header." for i in range(60))
DOCS = {
    "cookies.md": "# Cookies\n\nSet a cookie with the Set-Cookie response header. " + LONG + "\n",
    "sessions.md": "# Sessions\n\nA session cookie is deleted when the browser closes.\n",
    "cache.md": "# Caching\n\nThe Cache-Control header says how long a response may be reused.\n",
    "cors.md": "# CORS\n\nCross-origin requests need the Access-Control-Allow-Origin header.\n",
}


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path/kb.ragkit`` synced from DOCS; the CLI's Index gets the fake embedder."""
    docs = tmp_path / "docs"
    for rel, text in DOCS.items():
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        (docs / rel).write_text(text, encoding="utf-8")
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        assert not index.sync(docs).failed
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    monkeypatch.setenv("COLUMNS", "100")
    return tmp_path / "kb.ragkit"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def labels(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "relevant_source_paths": p}) + "\n" for q, p in rows))
    return path


# -- 2, 3, 14: prompt ------------------------------------------------------------------------------
def test_prompt_template_may_index_passages(kb: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    for template in ("Q={{ question }} {{ passages[0].source }}", "Q={{ question }} {{ passages[-1].source }}"):
        code, out, err = run(capsys, "prompt", "set a cookie", "--index", str(kb), "--template", template, "-k", "2")
        assert code == 0, err
        assert out.startswith("Q=set a cookie ") and out.strip().endswith(".md")


def test_prompt_with_little_room_shows_a_cut_passage_not_no_context(kb: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "prompt", "how do I set a cookie", "--index", str(kb), "--max-tokens", "300")
    assert code == 0, err
    assert "No relevant context" not in out and "[1]" in out
    assert "truncated from" in err


def test_prompt_reserve_tokens_help_states_the_rule(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        main(["prompt", "--help"])
    assert "a quarter of --max-tokens, at most 512" in " ".join(capsys.readouterr().out.split())


def test_prompt_json_and_min_score(kb: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "prompt", "cookie header", "--index", str(kb), "--json", "-k", "2")
    prompt = json.loads(out)
    assert code == 0 and prompt["context_sufficient"] and prompt["passages"][0]["source"]
    code, out, err = run(capsys, "prompt", "cookie header", "--index", str(kb), "--json", "--min-score", "1e9")
    assert code == 0 and json.loads(out)["context_sufficient"] is False  # nothing relevant enough: relevance


# -- search options and JSON -------------------------------------------------------------------------
def test_search_exposes_the_python_options(kb: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "search", "cookie header", "--index", str(kb), "--json", "-k", "4")
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and hits and all(h["source"] == h["metadata"]["source"] for h in hits)
    cut = hits[1]["score"]
    code, out, err = run(capsys, "search", "cookie header", "--index", str(kb), "--json", "--min-score", str(cut))
    assert code == 0 and [json.loads(x)["score"] >= cut for x in out.splitlines()] == [True, True]
    for flags in (["--group-by", "document"], ["--mmr"], ["--depth", "2"]):
        code, out, err = run(capsys, "search", "cookie header", "--index", str(kb), "--json", *flags)
        assert code == 0 and out.strip(), (flags, err)


def test_search_table_header_and_rows_align(kb: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "search", "cookie header", "--index", str(kb), "-k", "3")
    lines = out.splitlines()
    assert code == 0 and lines[0].index("source") == lines[1].index("cookies.md")
    assert max(len(line) for line in lines) <= 100


# -- 7, 8: eval ---------------------------------------------------------------------------------
def eval_rows(n_wrong: int) -> list[tuple[str, list[str]]]:
    good = [("set a cookie", ["cookies.md"]), ("session cookie", ["sessions.md"]), ("cache control", ["cache.md"]),
            ("cross origin", ["cors.md"])]
    return good + [(f"question {i}", [f"cokies{i}.md"]) for i in range(n_wrong)]


def test_eval_reports_every_missing_label(kb: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    queries = labels(tmp_path / "q.jsonl", [("set a cookie", ["cookie.md"]), *eval_rows(0)[1:]])
    code, out, err = run(capsys, "eval", "--index", str(kb), "--queries", str(queries), "-q")
    assert code == 0, err
    assert "labelled source path 'cookie.md' (query q1) is not in the index; did you mean 'cookies.md'?" in err


def test_eval_refuses_more_than_a_few_missing_labels(kb: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    queries = labels(tmp_path / "q.jsonl", eval_rows(4))
    code, out, err = run(capsys, "eval", "--index", str(kb), "--queries", str(queries), "-q")
    assert code == 2 and "4 labels are not in the index" in err and "--allow-missing" in err
    assert all(f"'cokies{i}.md'" in err for i in range(4))
    code, out, err = run(capsys, "eval", "--index", str(kb), "--queries", str(queries), "-q", "--allow-missing")
    assert code == 0 and "configuration" in out


def test_eval_table_aligns_and_json_prints(kb: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    queries = labels(tmp_path / "q.jsonl", eval_rows(0))
    code, out, err = run(capsys, "eval", "--index", str(kb), "--queries", str(queries), "-q")
    table = out.splitlines()[1:]
    assert code == 0 and table[0].startswith("configuration") and len(table) == 4
    assert len({len(line) for line in table}) == 1  # right-aligned numbers: every line ends in one column
    assert all(table[0].index("ndcg@10") <= line.index(".") for line in table[1:])
    code, out, err = run(capsys, "eval", "--index", str(kb), "--queries", str(queries), "-q", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["bm25", "dense", "hybrid"]


def test_info_table_aligns(kb: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "info", "--index", str(kb))
    lines = out.splitlines()
    starts = {line.index(line.split()[1], len(line.split()[0])) for line in lines[1:] if len(line.split()) > 1}
    assert code == 0 and lines[0].startswith("field") and len(starts) == 1
    assert json.loads(run(capsys, "info", "--index", str(kb), "--json")[1])["documents"] == 4


# -- 13: tune's hold-out --------------------------------------------------------------------------
def test_tune_says_how_many_were_held_out(kb: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rows = [(f"set a cookie {i}", ["cookies.md"]) for i in range(10)]
    code, out, err = run(capsys, "tune", "--index", str(kb), "--queries", str(labels(tmp_path / "q.jsonl", rows)), "-q")
    assert code == 2
    assert "got 7: of the 10 given, 3 (30%, --holdout 0.3) were held out to check the choice" in err
    assert "label at least 28 queries in all, or lower --holdout" in err


# -- 10: errors name CLI flags ---------------------------------------------------------------------
def test_errors_name_cli_flags_not_python_options() -> None:
    from ragkit.cli.common import cli_message

    locked = "index kb.ragkit is locked by another writer; retry later or pass lock_timeout=<seconds> (None waits)"
    assert cli_message(locked, argparse.Namespace(wait=0.0)).endswith("retry later or pass --wait SECONDS")
    assert "lock_timeout" not in cli_message(locked, argparse.Namespace())
    budget = "raise max_tokens (or max_passage_tokens), lower reserve_tokens"
    assert cli_message(budget, argparse.Namespace(max_tokens=1, reserve_tokens=None)) == (
        "raise --max-tokens (or max_passage_tokens), lower --reserve-tokens")


def test_a_locked_index_error_names_wait(kb: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with open_fake_index(kb) as index, index.backend.writer_lock(0.0):
        code, out, err = run(capsys, "index", str(tmp_path / "docs"), "--index", str(kb), "-q")
    assert code == 2 and "--wait" in err and "lock_timeout" not in err


def test_min_score_takes_auto_and_none_on_every_command(kb: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "prompt", "cookie header", "--index", str(kb), "--json", "-k", "2", "--min-score", "none")
    assert code == 0 and len(json.loads(out)["passages"]) == 2  # nothing left out
    code, out, _ = run(capsys, "search", "cookie header", "--index", str(kb), "--json", "--min-score", "auto")
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and all(h["relevance"] >= 0.5 for h in hits)
    with pytest.raises(SystemExit):
        run(capsys, "search", "cookie header", "--index", str(kb), "--min-score", "nan")
    assert "expected a number, 'auto' or 'none'" in capsys.readouterr().err
