"""Tests for the ``ragkit`` command line, run as a real subprocess on a tiny folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Every test runs the CLI in a subprocess over an index built with the real model (~10 s).
pytestmark = pytest.mark.slow

DOCS = {
    "queens.md": "# Queens\n\nA mated queen lays up to two thousand eggs a day at the height of spring.\n",
    "notes/smoke.md": "# Smoke\n\nCool white smoke from dry pine needles calms the guard bees.\n",
    "notes/varroa.md": "# Varroa\n\nCount varroa mites with a sugar roll of three hundred bees.\n",
    "harvest.txt": "Extract honey when at least eighty percent of the frame is capped with wax.\n",
    "broken.txt": b"\x00\x01binary junk\x00",
}


def ragkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A work folder holding ``docs/`` and the index ``kb.ragkit`` made by ``ragkit index docs``."""
    work = tmp_path_factory.mktemp("cli")
    for rel, content in DOCS.items():
        path = work / "docs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return work, ragkit("index", "docs", "--index", "kb.ragkit", "-q", cwd=work)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_index_prints_a_summary_line_the_files_and_the_failures(built) -> None:  # type: ignore[no-untyped-def]
    work, result = built
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    # the summary, then the files by outcome (issue 14: the report names them)
    assert lines[1:] == ["  added (4): harvest.txt, notes/smoke.md, notes/varroa.md, queens.md",
                         "  failed (1): broken.txt: binary file (NUL byte found); not loaded as text"]
    summary = "docs -> kb.ragkit: 4 added, 0 updated, 0 renamed, 0 removed, 0 unchanged, 1 failed; "
    assert lines[0].startswith(summary)
    assert "4 chunks embedded, 4 in index" in lines[0]
    assert "failed: broken.txt: binary file" in result.stderr
    again = ragkit("index", "docs", "--index", "kb.ragkit", "-q", cwd=work)
    assert again.returncode == 0
    assert "0 added, 0 updated, 0 renamed, 0 removed, 4 unchanged, 1 failed; 0 chunks embedded" in (
        again.stdout
    )


def test_info_json(built) -> None:  # type: ignore[no-untyped-def]
    work, _ = built
    result = ragkit("info", "--index", "kb.ragkit", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["documents"], info["chunks"], info["files"]) == (4, 4, 4)
    assert info["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["dimension"] == 384
    assert info["bytes_on_disk"] > 0
    plain = ragkit("info", "--index", "kb.ragkit", cwd=work)
    assert plain.returncode == 0, plain.stderr
    rows = {line.split()[0]: line.split()[1:] for line in plain.stdout.splitlines() if line.strip()}
    assert rows["documents"] == ["4"] and rows["chunks"] == ["4"]  # one aligned table: field, value


def test_search_json_lines_carry_both_legs(built) -> None:  # type: ignore[no-untyped-def]
    work, _ = built
    query = "how many eggs does a queen lay?"
    result = ragkit("search", query, "--index", "kb.ragkit", "-k", "3", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    hits = json_lines(result.stdout)
    assert len(hits) == 3
    assert hits[0]["doc_id"] == "queens.md" and hits[0]["metadata"]["source"] == "queens.md"
    assert "two thousand eggs" in hits[0]["text"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    for hit in hits:
        legs = {"bm25_score", "bm25_rank", "dense_score", "dense_rank"}
        assert {"chunk_id", "doc_id", "text", "score", *legs} <= set(hit)
        # a leg that did not return the hit shows the exact score fusion filled in, with no rank
        assert hit["bm25_score"] is not None and hit["dense_score"] is not None
        assert hit["source"] == hit["metadata"]["source"]
        assert hit["bm25_rank"] is not None or hit["dense_rank"] is not None
    assert hits[0]["bm25_rank"] == 1 and hits[0]["dense_rank"] == 1


def test_search_filters(built) -> None:  # type: ignore[no-untyped-def]
    work, _ = built
    result = ragkit("search", "bees honey smoke varroa queen", "--index", "kb.ragkit", "--mode", "bm25",
                    "-k", "10", "--filter", "source~notes/*", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert sorted(h["doc_id"] for h in json_lines(result.stdout)) == ["notes/smoke.md", "notes/varroa.md"]

    result = ragkit("search", "honey frame capped", "--index", "kb.ragkit", "--mode", "bm25",
                    "--filter", "type=markdown,text", "--filter", "source!=harvest.txt", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "harvest.txt" not in {h["doc_id"] for h in json_lines(result.stdout)}

    table = ragkit("search", "varroa sugar roll", "--index", "kb.ragkit", "--mode", "bm25", cwd=work)
    assert table.returncode == 0
    assert "notes/varroa.md" in table.stdout.splitlines()[1]
    assert "bm25 (rank)" in table.stdout


def test_check_passes_and_then_names_a_corrupt_file(  # type: ignore[no-untyped-def]
    built, tmp_path: Path
) -> None:
    work, _ = built
    result = ragkit("check", "--index", "kb.ragkit", cwd=work)
    assert (result.returncode, result.stdout.strip()) == (0, "ok: kb.ragkit is consistent")

    shutil.copytree(work / "kb.ragkit", tmp_path / "copy.ragkit")
    segment = sorted((tmp_path / "copy.ragkit" / "segments").iterdir())[-1]
    vectors = segment / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-8] + b"\xff" * 8)
    result = ragkit("check", "--index", "copy.ragkit", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL ")
    assert "vectors.npy" in result.stdout and "--rebuild" in result.stdout
    result = ragkit("search", "queen", "--index", "copy.ragkit", "--mode", "bm25", cwd=tmp_path)
    assert result.returncode == 2
    assert "ragkit search: error:" in result.stderr and "--rebuild" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "queen", "--index", "missing.ragkit"],
         "ragkit search: error: no index at missing.ragkit"),
        (["info", "--index", "missing.ragkit"], "create one with `ragkit index FOLDER"),
        (["search", "queen", "--index", "kb.ragkit", "--mode", "bm25", "--filter", "=x"], "bad --filter"),
        (["search", "queen", "--index", "kb.ragkit", "--mode", "bm25", "--filter", "colour=red"],
         "unknown filter field 'colour'"),
        (["index", "docs", "--index", "kb.ragkit", "--model", "other/model"], "built with embedding model"),
        (["index", "no-such-folder", "--index", "kb.ragkit"], "no-such-folder is not a folder"),
    ],
    ids=["missing-index", "missing-index-hint", "bad-filter", "unknown-field", "other-model",
         "missing-folder"],
)
def test_errors_exit_2_with_a_clear_message(  # type: ignore[no-untyped-def]
    built, args: list[str], message: str
) -> None:
    work, _ = built
    result = ragkit(*args, cwd=work)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (work / "missing.ragkit").exists()  # a failed command creates nothing
