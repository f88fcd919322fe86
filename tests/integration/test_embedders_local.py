"""The local model's runtimes and prompts, with the real all-MiniLM-L6-v2.

The ONNX export happens at most once (ragkit's cache keeps it); every test reuses it. Vectors are compared with torch fp32, the reference the issue's rule names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ragkit
from ragkit.text.embedders import onnx as onnx_runtime
from ragkit.text.embedders.cache import cache_dir
from ragkit.text.embedders.folder import exportable_layout, files_digest, resolve_model_path
from ragkit.text.embedding import DEFAULT_MODEL, Embedder

pytest.importorskip("onnxruntime")

TEXTS = [
    "when do bees swarm?",
    "Varroa mites are treated with oxalic acid in winter, when the colony has no brood. " * 12,  # > 256 tokens
    "x",
    "Ünïcödé ☃ 日本語のテキスト \ud800 lone surrogate",
    "Queen cells along the bottom of the frames mean the colony is preparing to swarm.",
]


@pytest.fixture(scope="session")
def cache() -> Path:
    """ragkit's cache folder with the default model exported into it (once per machine: every index on
    the default model needs the same graph, so a fresh folder here would only pay the export twice)."""
    Embedder(runtime="onnx").encode(["warm up"])
    return cache_dir()


@pytest.fixture(scope="session")
def torch_fp32() -> Embedder:
    return Embedder(runtime="torch", precision="fp32")


def test_onnx_vectors_equal_torch_fp32(cache: Path, torch_fp32: Embedder) -> None:
    onnx = Embedder(runtime="onnx")
    cosines = np.sum(onnx.encode(TEXTS) * torch_fp32.encode(TEXTS), axis=1)
    assert cosines.min() > 0.99999
    queries = np.sum(onnx.encode_queries(TEXTS[:2]) * torch_fp32.encode_queries(TEXTS[:2]), axis=1)
    assert queries.min() > 0.99999


def test_the_export_is_cached_once_keyed_by_the_model_files(cache: Path) -> None:
    layout = exportable_layout(DEFAULT_MODEL)
    assert layout is not None
    graph = cache / "onnx" / files_digest(layout) / "model.onnx"
    assert graph.is_file() and not list(graph.parent.glob("*.tmp"))  # renamed into place, nothing half-done
    mtime = graph.stat().st_mtime_ns
    assert onnx_runtime.graph_path(layout, "fp32") == graph and graph.stat().st_mtime_ns == mtime  # not redone


def test_the_default_embedder_is_exact_and_records_its_runtime(cache: Path, tmp_path: Path) -> None:
    emb = Embedder()
    assert emb.query_plan() == ("onnx", "fp32")
    assert emb.passage_plan()[1] in ("fp32", "bf16")  # bf16 only where the probe finds it fast here
    with ragkit.Index(tmp_path / "kb.ragkit", embedder=emb) as index:
        index.add([ragkit.Document(id="a", text="bees swarm in spring")])
        stored = index.backend.get_config()["embedder"]
    assert stored["kind"] == "sentence-transformers" and stored["name"] == DEFAULT_MODEL
    assert (stored["runtime"], stored["precision"]) == emb.passage_plan()


def model_with_prompts(folder: Path, prompts: dict[str, str]) -> Path:
    """A copy of the shipped MiniLM folder whose config declares ``prompts`` (weights symlinked)."""
    source = Path(resolve_model_path(DEFAULT_MODEL))
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    for weights in [*source.glob("*.safetensors"), *source.glob("*.bin")]:
        (folder / weights.name).symlink_to(weights)
    config = folder / "config_sentence_transformers.json"
    data = json.loads(config.read_text()) if config.is_file() else {}
    config.write_text(json.dumps({**data, "prompts": prompts, "default_prompt_name": None}))
    return folder


def test_declared_prompts_go_on_passages_and_queries(cache: Path, tmp_path: Path) -> None:
    folder = model_with_prompts(tmp_path / "e5-like", {"query": "query: ", "document": "passage: "})
    emb, plain = Embedder(str(folder)), Embedder()
    assert (emb.prompts.query, emb.prompts.passage) == ("query: ", "passage: ")
    np.testing.assert_allclose(emb.encode(["bees swarm"]), plain.encode(["passage: bees swarm"]), atol=1e-5)
    np.testing.assert_allclose(emb.encode_queries(["swarm"]), plain.encode_queries(["query: swarm"]), atol=1e-5)
    path = tmp_path / "kb.ragkit"
    with ragkit.Index(path, embedder=emb) as index:
        index.add([ragkit.Document(id="a", text="bees swarm in spring")])
    assert ragkit.Index(path).config.embedder["prompts"] == {"query": "query: ", "passage": "passage: "}
    # The same model opened with its prompts overridden: the index gives it the ones it was built with.
    with ragkit.Index(path, embedder=Embedder(str(folder), prompts={"query": "", "passage": ""})) as index:
        np.testing.assert_allclose(index.embed_query("swarm"), plain.encode_queries(["query: swarm"])[0], atol=1e-5)


def test_prompts_are_overridable_per_index(cache: Path, tmp_path: Path) -> None:
    emb = Embedder(prompts={"query": "Represent this question: ", "passage": ""})
    with ragkit.Index(tmp_path / "kb.ragkit", embedder=emb) as index:
        index.add([ragkit.Document(id="a", text="bees swarm in spring")])
        expected = Embedder().encode_queries(["Represent this question: swarm"])[0]  # passages may run bf16
        np.testing.assert_allclose(index.embed_query("swarm"), expected, atol=1e-5)


def test_a_search_embeds_its_query_without_importing_torch(cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "kb.ragkit"
    with ragkit.Index(path) as index:
        index.add([ragkit.Document(id="swarm", text="Bees swarm in late spring."),
                   ragkit.Document(id="mites", text="Varroa mites are treated in winter.")])
    code = ("import sys; from ragkit.cli import main; "
            f"code = main(['search', 'when do bees swarm', '--index', {str(path)!r}, '--mode', 'dense', '-k', '1']); "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)); "
            "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]") and "swarm" in done.stdout


def test_the_index_command_takes_runtime_and_precision(cache: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from ragkit.cli.commands import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "swarm.md").write_text("# Swarms\n\nQueen cells mean the colony is preparing to swarm.\n")
    kb = str(tmp_path / "kb.ragkit")
    assert main(["index", str(docs), "--index", kb, "-q", "--runtime", "onnx", "--precision", "fp32"]) == 0
    with ragkit.Index(kb) as index:
        stored = index.backend.get_config()["embedder"]
        assert (stored["runtime"], stored["precision"]) == ("onnx", "fp32")
    capsys.readouterr()
    assert main(["index", str(docs), "--index", kb, "-q", "--runtime", "torch", "--precision", "int8"]) == 2
    assert "--precision 'int8' is not available with --runtime 'torch'" in capsys.readouterr().err


def test_queries_are_counted_with_the_onnx_tokenizer_already_loaded(cache: Path) -> None:
    from ragkit.text.embedding import load_tokenizer

    onnx = Embedder(runtime="onnx")
    onnx.encode_queries(["warm up"])
    count, reference = onnx.query_token_counter(), load_tokenizer(DEFAULT_MODEL)
    for text in ["How do I add CORS middleware?", "Как обновить состояние", "كيفية تحديث حالة المكون", TEXTS[3]]:
        assert count(text) == len(reference.encode(text, add_special_tokens=False)), text
