"""Embedders users choose: OpenAI-compatible and Ollama services (real HTTP on loopback), a plain
function, and an index that records which embedder built it and refuses another.

The stand-in server answers with the hashing vectors of ``tests/fakes.py``, so searches over the
samples rank meaningfully and the same text always gets the same vector.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import embed

import ragkit
from ragkit.errors import ConfigError, EmbedderMismatchError, EmbeddingServiceError
from ragkit.text.embedders import CallableEmbedder, OllamaEmbedder, OpenAIEmbedder, records
from ragkit.text.embedding import DEFAULT_MODEL, Embedder

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "docs"


class StandIn:
    """A loopback embedding service: ``/v1/embeddings`` (OpenAI shape) and ``/api/embed`` (Ollama's)."""

    def __init__(self) -> None:
        self.inputs: list[str] = []
        self.failures: list[int] = []  # statuses to answer with before succeeding, one per request
        self.headers: list[dict[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.headers.append(dict(self.headers))
                if stand_in.failures:
                    self._answer(stand_in.failures.pop(0), {"error": "try again"}, {"Retry-After": "0"})
                    return
                texts = body["input"]
                stand_in.inputs.extend(texts)
                vectors = [(embed(t) * 3.0).tolist() for t in texts]  # not unit: the client normalises
                if self.path == "/v1/embeddings":
                    rows = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
                    self._answer(200, {"object": "list", "data": rows[::-1], "model": body["model"]})
                elif self.path == "/api/embed":
                    self._answer(200, {"model": body["model"], "embeddings": vectors})
                else:
                    self._answer(404, {"error": "no such path"})

            def _answer(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def service() -> Iterator[StandIn]:
    stand_in = StandIn()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


@pytest.fixture(autouse=True)
def _fresh(service: StandIn) -> None:
    service.inputs.clear()
    service.failures.clear()
    service.headers.clear()


@pytest.mark.slow  # syncing the samples parses PDFs and HTML: seconds, not milliseconds
@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_a_service_embedder_indexes_and_searches_the_samples(service: StandIn, tmp_path: Path, kind: str) -> None:
    emb = (OpenAIEmbedder(service.url + "/v1", model="embed-small", batch_size=50) if kind == "openai"
           else OllamaEmbedder(service.url, model="nomic-embed-text", batch_size=50))
    with ragkit.Index(tmp_path / "kb.ragkit", embedder=emb, show_progress=False) as index:
        report = index.sync(SAMPLES)
        assert report.chunks_embedded > 100 and not report.failed
        hits = index.search("when do bees swarm", k=3, mode="dense")
        assert hits and "swarm" in hits[0].text.lower()
        probes = (index.config.dense_competence or {})["probes"]  # the dense leg's self-test after the sync
    assert probes > 0 and len(service.inputs) == report.chunks_embedded + probes + 1  # every chunk once, the query
    # Opened again without an embedder, the index rebuilds the service embedder from its record.
    with ragkit.Index(tmp_path / "kb.ragkit", show_progress=False) as again:
        assert again.embedder.name == emb.name and type(again.embedder) is type(emb)
        assert again.search("when do bees swarm", k=1, mode="dense")[0].chunk_id == hits[0].chunk_id


def test_an_index_refuses_an_embedder_that_did_not_build_it(service: StandIn, tmp_path: Path) -> None:
    path = tmp_path / "kb.ragkit"
    with ragkit.Index(path, embedder=OllamaEmbedder(service.url, model="nomic-embed-text")) as index:
        index.add([ragkit.Document(id="a", text="bees swarm in spring")])
    for other in (OpenAIEmbedder(service.url + "/v1", model="nomic-embed-text"),
                  OllamaEmbedder(service.url, model="mxbai-embed-large"),
                  CallableEmbedder(lambda texts: [embed(t) for t in texts], name="ollama:nomic-embed-text")):
        # (the last has the same name but is another kind of embedder: "ollama ..." vs "callable ...")
        with pytest.raises(EmbedderMismatchError) as caught:
            ragkit.Index(path, embedder=other)
        message = str(caught.value)
        assert "'ollama:nomic-embed-text'" in message and repr(other.name) in message
        assert isinstance(caught.value, ragkit.ModelMismatchError)


def test_queries_and_passages_get_their_own_prompts(service: StandIn, tmp_path: Path) -> None:
    emb = OllamaEmbedder(service.url, model="nomic", query_prompt="search_query: ", passage_prompt="search_document: ")
    with ragkit.Index(tmp_path / "kb.ragkit", embedder=emb) as index:
        index.add([ragkit.Document(id="a", text="bees swarm in spring")])
        index.search("swarm", k=1, mode="dense")
    assert service.inputs == ["search_document: bees swarm in spring", "search_query: swarm"]
    # Reopened with an embedder that has no prompts, the index gives it the stored ones.
    service.inputs.clear()
    with ragkit.Index(tmp_path / "kb.ragkit", embedder=OllamaEmbedder(service.url, model="nomic")) as index:
        index.search("when", k=1, mode="dense")
    assert service.inputs == ["search_query: when"]


def test_vectors_come_back_normalised_in_input_order(service: StandIn) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    vectors = OpenAIEmbedder(service.url + "/v1", model="m", batch_size=2).encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 64)
    np.testing.assert_allclose(vectors, np.stack([embed(t) for t in texts]), atol=1e-6)


def test_transient_failures_are_retried_and_auth_failures_are_not(service: StandIn) -> None:
    emb = OpenAIEmbedder(service.url + "/v1", model="m", api_key="sk-secret", backoff=0.0, max_retries=2)
    service.failures[:] = [503, 429]
    assert emb.encode(["x"]).shape == (1, 64)
    assert service.headers[-1]["Authorization"] == "Bearer sk-secret"
    service.failures[:] = [401]
    with pytest.raises(EmbeddingServiceError, match=r"HTTP 401 \(a key was sent\)") as caught:
        emb.encode(["x"])
    assert "sk-secret" not in str(caught.value) and caught.value.status_code == 401  # type: ignore[attr-defined]
    service.failures[:] = [500, 500, 500]
    with pytest.raises(EmbeddingServiceError, match="failed after 3 attempts: HTTP 500"):
        emb.encode(["x"])


def test_an_unreachable_service_is_one_clear_error() -> None:
    with pytest.raises(EmbeddingServiceError, match="could not connect.*base_url"):
        OllamaEmbedder("http://127.0.0.1:9", model="m", max_retries=0).encode(["x"])
    with pytest.raises(ConfigError, match="base_url"):
        OllamaEmbedder("localhost:11434", model="m")


def test_a_plain_function_is_an_embedder(tmp_path: Path) -> None:
    seen: list[str] = []

    def vectors(texts: list[str]) -> list[np.ndarray]:
        seen.extend(texts)
        return [embed(t) for t in texts]

    emb = CallableEmbedder(vectors, name="team/hashing-v1", query_prompt="q: ")
    with ragkit.Index(tmp_path / "kb.ragkit", embedder=emb) as index:
        index.add([ragkit.Document(id="a", text="bees swarm"), ragkit.Document(id="b", text="varroa mites")])
        assert index.search("swarm", k=1, mode="dense")[0].doc_id == "a"
    assert seen[-1] == "q: swarm" and emb.dimension == 64
    with pytest.raises(ConfigError, match="callable 'team/hashing-v1'.*embedder="):
        ragkit.Index(tmp_path / "kb.ragkit")
    with pytest.raises(ConfigError, match="returned shape"):
        CallableEmbedder(lambda texts: [[1.0, 0.0]], name="bad").encode(["a", "b"])


def local_record(precision: str) -> dict[str, Any]:
    return {"kind": "sentence-transformers", "name": DEFAULT_MODEL, "prompts": {"query": "", "passage": ""},
            "runtime": "onnx", "precision": precision}


def test_an_int8_index_gets_int8_queries_and_a_lossy_mismatch_warns(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    auto = Embedder()
    records.adopt(local_record("int8"), auto, "kb.ragkit")  # "auto" follows what the passages were built with
    assert auto.query_plan() == ("onnx", "int8") and not caplog.records
    records.adopt(local_record("int8"), Embedder(runtime="onnx", precision="fp32"), "kb.ragkit")
    assert "holds int8 vectors; this embedder makes fp32" in caplog.text
    caplog.clear()
    records.adopt(local_record("bf16"), Embedder(runtime="onnx", precision="fp32"), "kb.ragkit")
    assert not caplog.records  # both exact: no warning


def test_local_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="runtime must be one of 'auto', 'torch', 'onnx'"):
        Embedder(runtime="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="precision='int8' is not available with runtime='torch'"):
        Embedder(runtime="torch", precision="int8")
