"""Embedding runtimes side by side: torch fp32 (the reference), torch bf16, ONNX fp32, ONNX int8.

    python benchmarks/embedding.py [--data ../shared/data/scifact] [--passages 1000] [--queries 300]

For each runtime, in one run on the same texts: passages/s (SciFact abstracts, title + text), ms per
query (one query per call, as a search does), cold start (a fresh process that embeds one sentence),
and against torch fp32: min and mean cosine of the passage vectors, and the mean top-10 overlap of the
queries' dense rankings over those passages. Prints a Markdown table (the README's Embedders section).
Not part of CI: about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.text.embedders import probe
from ragkit.text.embedding import Embedder

RUNTIMES = {  # label -> Embedder options
    "torch fp32": {"runtime": "torch", "precision": "fp32"},
    "torch bf16": {"runtime": "torch", "precision": "bf16"},
    "onnx fp32": {"runtime": "onnx", "precision": "fp32"},
    "onnx int8 (opt-in)": {"runtime": "onnx", "precision": "int8"},
}
COLD = "import time; t=time.perf_counter(); from ragkit.text.embedding import Embedder; " \
       "Embedder(runtime={runtime!r}, precision={precision!r}).encode_queries(['bees swarm in spring']); " \
       "print(time.perf_counter()-t)"


def load_texts(data: Path, passages: int, queries: int) -> tuple[list[str], list[str]]:
    with (data / "corpus.jsonl").open() as handle:
        rows = [json.loads(line) for _, line in zip(range(passages), handle)]
    with (data / "queries.jsonl").open() as handle:
        asked = [json.loads(line)["text"] for _, line in zip(range(queries), handle)]
    return [f"{r.get('title', '')}\n{r['text']}".strip() for r in rows], asked


def cold_start(options: dict[str, str], repeats: int) -> float:
    """Seconds for a fresh interpreter to import ragkit's embedder, load the model and embed one query."""
    code = COLD.format(**options)
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                   .stdout.split()[-1]) for _ in range(repeats)]
    return min(times)


def measure(options: dict[str, str], passages: list[str], queries: list[str], cold_repeats: int) -> dict[str, Any]:
    emb = Embedder(**options)  # type: ignore[arg-type]
    emb.encode(passages[:8])  # load and warm up (the ONNX export happens here once per model)
    emb.encode_queries(queries[:4])
    started = time.perf_counter()
    vectors = emb.encode(passages)
    passage_s = time.perf_counter() - started
    per_query = []
    query_vectors = []
    for q in queries:
        t = time.perf_counter()
        query_vectors.append(emb.encode_queries([q])[0])
        per_query.append(time.perf_counter() - t)
    return {"vectors": vectors, "queries": np.stack(query_vectors), "passages_per_s": len(passages) / passage_s,
            "ms_per_query": 1000 * statistics.median(per_query), "cold_s": cold_start(options, cold_repeats)}


def top10(queries: np.ndarray, passages: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ passages.T), axis=1)[:, :10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/scifact")
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--cold-repeats", type=int, default=2, help="fresh processes per runtime (the fastest counts)")
    parser.add_argument("--only", nargs="*", default=list(RUNTIMES), help="runtime labels to run")
    args = parser.parse_args()
    passages, queries = load_texts(args.data, args.passages, args.queries)
    speedup = probe.bf16_speedup()
    print(f"{len(passages)} SciFact abstracts, {len(queries)} queries; bf16 probe: "
          f"{speedup and round(speedup, 2)}x fp32 (bf16 passages by default: {probe.bf16_is_fast()})", flush=True)
    print("| runtime | passages/s | vs torch fp32 | ms/query | cold start (s) | cosine to fp32 min / mean | top-10 overlap |")
    print("|---|---|---|---|---|---|---|", flush=True)
    reference = measure(RUNTIMES["torch fp32"], passages, queries, args.cold_repeats)
    for label in ["torch fp32", *[x for x in args.only if x != "torch fp32"]]:
        result = reference if label == "torch fp32" else measure(RUNTIMES[label], passages, queries, args.cold_repeats)
        print(row(label, result, reference), flush=True)  # each row as soon as it is measured


def row(label: str, r: dict[str, Any], reference: dict[str, Any]) -> str:
    cosines = np.sum(r["vectors"] * reference["vectors"], axis=1)
    tops, ref_top = top10(r["queries"], r["vectors"]), top10(reference["queries"], reference["vectors"])
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops, ref_top)])
    speed = r["passages_per_s"] / reference["passages_per_s"]
    return (f"| {label} | {r['passages_per_s']:.1f} | {speed:.2f} | {r['ms_per_query']:.1f} | {r['cold_s']:.2f} "
            f"| {cosines.min():.4f} / {cosines.mean():.4f} | {overlap:.1%} |")


if __name__ == "__main__":
    main()
