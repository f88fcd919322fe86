"""Whether bfloat16 is natively fast on this CPU: a GEMM micro-probe, timed once per machine and cached.

A CPU flag does not say it: issue 21 measured bf16 weights at 0.85x fp32 on a CPU with ``avx512_bf16``
and at 0.15x on AVX2, while an AMD EPYC with ``avx512_bf16`` and no AMX ran them at 2.1x. So the first
bulk encode on a machine times a few encoder-sized matrix products in fp32 and in bf16 (0.26 s
after torch's import, measured at load 3 on 2 cores) and keeps the speedup in
``<cache>/probes/bf16-<key>.json``, keyed by the CPU model and flags, the cores this process may use
and torch's version; later processes read the file and import nothing. A failed probe (no torch, a read-only cache) means "not fast": fp32 is always right.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from ragkit.text.embedders.cache import atomic_write, cache_dir
from ragkit.text.embedders.onnx import cores

logger = logging.getLogger(__name__)

# bf16 passages only where the probe's products run at least this much faster than fp32: the model is
# not only GEMMs (attention softmax, LayerNorm and the tokenizer do not speed up), so a small GEMM gain
# could vanish end to end. On this AMD EPYC the probe reads 2.0-2.4x and the model ran 2.1x.
FAST_ENOUGH = 1.3
# (rows, inner, cols): MiniLM-sized products for 16 sequences of 32 tokens (the FFN up and down projections)
SHAPES = ((512, 384, 1536), (512, 1536, 384))
ROUNDS = 3


def bf16_is_fast() -> bool:
    """Whether torch bf16 is clearly faster than fp32 on this CPU (probed once per machine, then cached)."""
    speedup = bf16_speedup()
    return speedup is not None and speedup >= FAST_ENOUGH


@lru_cache(maxsize=1)
def bf16_speedup() -> float | None:
    """fp32 time over bf16 time for the probe's products here, from the cache or measured now; None
    when it cannot be measured (torch missing)."""
    return cached_speedup(probe_file(), measure_gemms)


def cached_speedup(path: Path, measure: Callable[[], float | None]) -> float | None:
    """The speedup stored at ``path``, else ``measure()`` stored there atomically (if it gave one)."""
    try:
        return float(json.loads(path.read_text())["speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    speedup = measure()
    if speedup is None:
        return None
    logger.info("bf16 probe: %.2fx fp32 on this CPU (bf16 passages from %.1fx)", speedup, FAST_ENOUGH)
    record = {"speedup": round(speedup, 3), "machine": machine(), "shapes": SHAPES}
    try:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record)))
    except OSError:  # a read-only cache: probe again in the next process
        logger.debug("cannot save the bf16 probe to %s", path, exc_info=True)
    return speedup


def probe_file() -> Path:
    keyed = {**machine(), "shapes": SHAPES, "rounds": ROUNDS}  # a changed probe measures again
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "probes" / f"bf16-{key}.json"


def machine() -> dict[str, object]:
    """What the probe's answer depends on: the CPU (model and flags), the usable cores, torch's version."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and not model:
                    model = value.strip()
                elif name.strip() == "flags" and not flags:
                    flags = " ".join(sorted(value.split()))
    except OSError:  # not Linux: the platform's own description
        import platform

        model = platform.processor() or platform.machine()
    try:
        torch_version = metadata.version("torch")  # without importing torch
    except metadata.PackageNotFoundError:
        torch_version = None
    return {"cpu": model, "flags": flags, "cores": cores(), "torch": torch_version}


def measure_gemms() -> float | None:
    """Best-of-``ROUNDS`` fp32 over bf16 time for ``SHAPES``, rounds interleaved (a load change hits both)."""
    try:
        import torch
    except ImportError:
        return None
    if torch.get_num_threads() != cores():
        torch.set_num_threads(cores())  # as the model will run (sentence_transformers.load sets the same)
    generator = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)) for m, k, n in SHAPES]
    operands = {dtype: [(a.to(dtype), b.to(dtype)) for a, b in pairs] for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(operands, float("inf"))
    with torch.no_grad():
        for _ in range(ROUNDS + 1):  # the first round warms up (oneDNN picks its kernels)
            for dtype, products in operands.items():
                began = time.perf_counter()
                for a, b in products:
                    torch.matmul(a, b)
                best[dtype] = min(best[dtype], time.perf_counter() - began)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)
