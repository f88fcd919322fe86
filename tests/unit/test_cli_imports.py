"""`ragkit search` stays fast: a fresh process searching a real (ONNX-embedded) index imports none of the
heavy modules it does not need (issues 14 and 21), so a slow import cannot creep back unnoticed.

The index is built with the real model through ONNX Runtime (its export is cached once per machine, as for
every ONNX test); the search runs in a fresh interpreter, as the command line does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ragkit

pytest.importorskip("onnxruntime")

# What a search must not load: torch's stack (queries go through ONNX), scipy (BM25 scores from the stored
# arrays), pathspec (only sync compiles patterns), numpy.ma (np.unique's first call), and the libraries of
# other commands (templates, HTTP, validation, progress bars, YAML, images, PDFs).
NOT_FOR_SEARCH = (
    "torch", "sentence_transformers", "transformers", "scipy", "pathspec", "numpy.ma", "numpy.f2py", "numpy.testing",
    "jinja2", "httpx", "requests", "pydantic", "tqdm", "yaml", "PIL", "pypdf", "pdfplumber", "charset_normalizer",
)
SEARCH = """
import json, sys
from ragkit.cli import main
code = main(["search", "when do bees swarm", "--index", sys.argv[1], "-k", "1"])
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def _fresh_modules(code: str, *args: str) -> tuple[str, set[str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout, set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def onnx_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ragkit.text.embedding import Embedder

    path = tmp_path_factory.mktemp("cli-imports") / "kb.ragkit"
    with ragkit.Index(path, embedder=Embedder(runtime="onnx")) as index:
        index.add([ragkit.Document(id="swarm", text="Bees swarm in late spring, when the colony is crowded."),
                   ragkit.Document(id="mites", text="Varroa mites are treated with oxalic acid in winter.")])
    return path


def test_a_hybrid_search_imports_nothing_it_does_not_need(onnx_index: Path) -> None:
    # modules a bare `import numpy` loads itself (numpy.ma in numpy 1.x) are numpy's cost, not the search's
    _, numpy_own = _fresh_modules("import json, sys, numpy; print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    out, loaded = _fresh_modules(SEARCH, str(onnx_index))
    assert "swarm" in out
    assert {"onnxruntime", "faiss"} <= loaded  # the search did run both legs
    new = loaded - numpy_own
    heavy = [name for name in NOT_FOR_SEARCH if any(m == name or m.startswith(f"{name}.") for m in new)]
    assert not heavy, f"`ragkit search` imported {heavy}: import them where they are used"


def test_the_saved_optimised_graph_gives_the_same_vectors(onnx_index: Path) -> None:
    """The session loads the graph optimised once and saved beside the export (faster to start): its
    token vectors equal those of the export optimised in memory."""
    import onnxruntime as ort

    from ragkit.text.embedders import onnx as onnx_runtime
    from ragkit.text.embedders.folder import exportable_layout
    from ragkit.text.embedding import DEFAULT_MODEL

    layout = exportable_layout(DEFAULT_MODEL)
    assert layout is not None
    graph = onnx_runtime.graph_path(layout, "fp32")
    onnx_runtime.session.cache_clear()
    saved = onnx_runtime.session(str(graph))
    assert list(graph.parent.glob(f"model.opt-ort{ort.__version__}.onnx"))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    in_memory = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    ids = np.array([[101, 2043, 2079, 13734, 25430, 102]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    wanted = {i.name for i in saved.get_inputs()}
    np.testing.assert_allclose(saved.run(None, {n: a for n, a in feed.items() if n in wanted})[0],
                               in_memory.run(None, {n: a for n, a in feed.items() if n in wanted})[0], atol=1e-5)
