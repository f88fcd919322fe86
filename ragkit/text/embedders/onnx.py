"""An ONNX Runtime copy of a sentence-transformers model: same vectors, no torch at query time.

The model's transformer is exported once with ``torch.onnx.export`` into ragkit's cache, keyed by
a hash of the model's files; pooling and normalisation run in numpy, tokenisation in ``tokenizers``.
A fresh process that embeds one query then imports onnxruntime, tokenizers and numpy (about 0.4 s)
instead of torch and sentence-transformers (about 6 s). ``precision="int8"`` quantises the weights
dynamically: faster, but measurably lossy, so only on request.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import ModelNotAvailableError
from ragkit.text.embedders.cache import atomic_write, cache_dir
from ragkit.text.embedders.folder import Layout, encodable, files_digest

logger = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OPSET = 17


def available() -> bool:
    """Whether onnxruntime is installed (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def graph_path(layout: Layout, precision: str) -> Path:
    """Where the exported graph of this model lives (exported first when missing)."""
    folder = cache_dir() / "onnx" / files_digest(layout)
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        atomic_write(fp32, lambda tmp: export(layout, tmp))
    if precision != "int8":
        return fp32
    int8 = folder / "model.int8.onnx"
    if not int8.is_file():
        atomic_write(int8, lambda tmp: _quantize(fp32, tmp))
    return int8


def export(layout: Layout, target: Path) -> None:
    """Export the folder's transformer (token vectors out) to ``target`` with ``torch.onnx.export``."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise ModelNotAvailableError(f"exporting {layout.root} to ONNX needs torch and transformers: {exc}") from exc
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a library
    logger.info("exporting %s to ONNX (once per model; cached in %s)", layout.root, target.parent)
    model = AutoModel.from_pretrained(str(layout.transformer)).eval()
    takes_types = getattr(model.config, "type_vocab_size", 0) > 0
    names = list(_INPUTS if takes_types else _INPUTS[:2])

    class TokenVectors(torch.nn.Module):  # keyword call: transformers 5 reordered forward()'s arguments
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    ids = torch.ones(2, 8, dtype=torch.long)
    sample = (ids, torch.ones_like(ids), torch.zeros_like(ids))[: len(names)]
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "token_vectors"]}
    try:
        # the tracer warns about Python-level branches on shapes; the vectors are checked in tests instead
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(TokenVectors(), sample, str(target), input_names=names, output_names=["token_vectors"],
                              dynamic_axes=axes, opset_version=_OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many kinds (missing onnx, unsupported op)
        raise ModelNotAvailableError(f"cannot export {layout.root} to ONNX: {exc}") from exc


def _quantize(fp32: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel scales on the MatMul weights only: per-tensor scales measured min cosine 0.90 to
    # fp32 on SciFact abstracts, per-channel 0.99 (embeddings and LayerNorm stay fp32 either way).
    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])


@lru_cache(maxsize=4)
def session(path: str) -> Any:
    """One inference session per graph per process, on every core, from the graph optimised once.

    The first session optimises the graph (fused attention, LayerNorm, GELU) and saves the result
    beside it; later processes load that with optimisation off, which measured 40 to 50 ms less of the
    ~250 ms session creation, token vectors identical. EXTENDED, not ALL: ALL only adds CPU-specific
    layout rewrites (none apply to a transformer; same vectors), and the saved file must stay valid in
    a cache shared between machines. The file is named by the onnxruntime version that wrote it.
    """
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel
    optimized = Path(path).with_suffix(f".opt-ort{ort.__version__}.onnx")
    if optimized.is_file():
        return ort.InferenceSession(str(optimized), _options(levels.ORT_DISABLE_ALL), providers=_PROVIDERS)
    made: list[Any] = []

    def optimize(tmp: Path) -> None:
        options = _options(levels.ORT_ENABLE_EXTENDED)
        options.optimized_model_filepath = str(tmp)
        made.append(ort.InferenceSession(path, options, providers=_PROVIDERS))

    try:
        atomic_write(optimized, optimize)
    except OSError:  # a read-only cache: optimise in memory, every time
        logger.debug("cannot save the optimised graph beside %s", path, exc_info=True)
    return made[0] if made else ort.InferenceSession(path, _options(levels.ORT_ENABLE_EXTENDED),
                                                     providers=_PROVIDERS)


_PROVIDERS = ["CPUExecutionProvider"]


def _options(level: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = cores()
    # Idle intra-op threads block instead of spinning: on a busy machine (a server's own threads, other
    # processes) a spinning thread burns the core its partner needs. `ragkit serve` /search at 32 clients
    # served 2.3-3.1x the req/s of the ddda9cf server with it off, 1.1-2.3x with it on (benchmarks/server.py,
    # interleaved, load 8-12 on 2 cores); 46 passages of 256 tokens took 10-12 s against 13-14 s; one SciFact
    # query at a time, 8.0-8.8 ms median against 14.7-15.6 ms (300 queries, load 2.8).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = level
    options.log_severity_level = 3  # its warnings about unused initialisers are noise here
    return options


class OnnxEncoder:
    """Texts in, the model's vectors out, through an exported graph: batches sorted by length."""

    def __init__(self, layout: Layout, *, precision: str = "fp32", batch_size: int = 32) -> None:
        self.layout = layout
        self.precision = precision
        self.batch_size = batch_size
        self._ready: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._ready is None:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(self.layout.transformer / "tokenizer.json"))
                tok.enable_truncation(self.layout.max_length)
                tok.no_padding()
                self._ready = (session(str(graph_path(self.layout, self.precision))), tok)
        return self._ready

    def count_tokens(self, text: str) -> int:
        """The tokens this encoder makes of ``text`` (no special tokens; cut at the window)."""
        _, tok = self.load()
        return len(tok.encode(encodable(text.lower() if self.layout.lower_case else text), add_special_tokens=False).ids)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        sess, tok = self.load()
        prepared = [encodable(t.lower() if self.layout.lower_case else t) for t in texts]
        encodings = tok.encode_batch(prepared)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out: np.ndarray | None = None
        wanted = {i.name for i in sess.get_inputs()}
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            vectors = self._batch(sess, wanted, [encodings[i] for i in rows])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None
        return out

    def _batch(self, sess: Any, wanted: set[str], encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        arrays = {n: np.zeros((len(encodings), width), dtype=np.int64) for n in _INPUTS}
        for row, e in enumerate(encodings):
            n = len(e.ids)
            arrays["input_ids"][row, :n] = e.ids
            arrays["attention_mask"][row, :n] = e.attention_mask
            arrays["token_type_ids"][row, :n] = e.type_ids
        (tokens,) = sess.run(None, {n: a for n, a in arrays.items() if n in wanted})
        return pool(tokens, arrays["attention_mask"], self.layout.pooling, self.layout.normalize)


def pool(tokens: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """sentence-transformers' Pooling (+ Normalize) in numpy, float32 like torch's."""
    if mode == "cls":
        vectors = tokens[:, 0]
    elif mode == "max":
        vectors = np.where(mask[..., None] > 0, tokens, -1e9).max(axis=1)
    else:
        weights = mask[..., None].astype(np.float32)
        vectors = (tokens * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    vectors = vectors.astype(np.float32)
    if normalize:
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors
