"""The bf16 decision: a probe of this machine (timings injected here), cached per machine, and the
passage/query plans it leads to. No model runs: plans are decided without loading weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit.text.embedders import probe, records
from ragkit.text.embedding import DEFAULT_MODEL, Embedder


@pytest.fixture
def speedup(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """What the probe answers (set ``speedup[0]``); each Embedder decision reads it."""
    answer: list[float | None] = [None]
    monkeypatch.setattr(probe, "bf16_speedup", lambda: answer[0])
    return answer


def test_the_probe_runs_once_and_later_calls_read_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "probes" / "bf16-x.json"
    calls: list[int] = []
    measure = lambda: calls.append(1) or 2.4
    assert probe.cached_speedup(path, measure) == 2.4
    assert probe.cached_speedup(path, measure) == 2.4 and len(calls) == 1
    stored = json.loads(path.read_text())
    assert stored["speedup"] == 2.4 and stored["machine"]["cores"] >= 1
    assert [p.name for p in path.parent.iterdir()] == ["bf16-x.json"]  # renamed into place, no temporary left


def test_a_failed_probe_is_not_cached_and_a_damaged_cache_is_probed_again(tmp_path: Path) -> None:
    path = tmp_path / "bf16.json"
    assert probe.cached_speedup(path, lambda: None) is None and not path.exists()
    path.write_text("{not json")
    assert probe.cached_speedup(path, lambda: 0.8) == 0.8 and json.loads(path.read_text())["speedup"] == 0.8


def test_the_cache_is_keyed_by_the_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGKIT_CACHE_DIR", str(tmp_path))
    here = probe.probe_file()
    assert here.parent == tmp_path / "probes"
    monkeypatch.setattr(probe, "machine", lambda: {"cpu": "other", "flags": "avx2", "cores": 2, "torch": "2.13"})
    assert probe.probe_file() != here


@pytest.mark.parametrize(("measured", "fast"), [(2.1, True), (1.3, True), (1.25, False), (0.85, False), (None, False)])
def test_bf16_is_used_only_where_the_probe_finds_it_clearly_faster(speedup: list, measured: float | None,
                                                                    fast: bool) -> None:
    pytest.importorskip("onnxruntime")
    speedup[0] = measured
    emb = Embedder()
    assert emb.passage_plan() == (("torch", "bf16") if fast else ("onnx", "fp32"))  # else the best exact option
    assert emb.query_plan() == ("onnx", "fp32")  # queries: ONNX measured faster than torch bf16 per query
    assert probe.bf16_is_fast() is fast


def test_an_explicit_precision_wins_over_the_probe(speedup: list) -> None:
    pytest.importorskip("onnxruntime")
    speedup[0] = 3.0
    assert Embedder(precision="fp32").passage_plan() == ("onnx", "fp32")
    assert Embedder(runtime="torch", precision="fp32").passage_plan() == ("torch", "fp32")
    speedup[0] = 0.5
    assert Embedder(precision="bf16").passage_plan() == ("torch", "bf16")
    assert Embedder(runtime="torch").passage_plan() == ("torch", "fp32")


def test_opening_an_index_does_not_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe() -> float:
        raise AssertionError("a search-only open must not run the bf16 probe (it imports torch)")

    monkeypatch.setattr(probe, "bf16_speedup", no_probe)
    for precision in ("fp32", "bf16"):
        emb = Embedder()
        stored = {"kind": "sentence-transformers", "name": DEFAULT_MODEL, "prompts": {"query": "", "passage": ""},
                  "runtime": "torch", "precision": precision}
        records.adopt(stored, emb, "kb.ragkit")
        assert emb.passage_plan()[1] == precision  # new passages match what the index holds
