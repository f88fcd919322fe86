"""`ragkit search` wall time on the samples index: the old path (torch) against the new (ONNX Runtime).

    python benchmarks/cli_latency.py [--index /tmp/ragkit-samples.ragkit] [--old-ref 833568a] [--runs 5]

"Old" is ragkit at ``--old-ref`` (before issue 21: every search imported torch and
sentence-transformers), checked out once into a git worktree beside this one and run from there;
"new" is this checkout. Both search the same index (built first with this checkout if missing), in
fresh processes, interleaved old/new, ``--runs`` times each; the table gives the median and the
ratio, and whether the new process imported torch at all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "when do bees swarm"
PROBE = ("import sys; from ragkit.cli import main; code = main(['search', {query!r}, '--index', {index!r}, '-k', '3']); "
         "print('torch imported:', 'torch' in sys.modules, file=sys.stderr); sys.exit(code)")


def ensure_index(index: Path) -> None:
    if not index.exists():
        subprocess.run([sys.executable, "-m", "ragkit.cli", "index", str(ROOT / "samples/docs"), "--index", str(index),
                        "-q"], check=True, cwd=ROOT)


def ensure_old(ref: str) -> Path:
    tree = Path(f"/tmp/ragkit-old-{ref}")
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)
    return tree


def search_seconds(source: Path, index: Path) -> tuple[float, str]:
    """Wall seconds of one `python -m ragkit.cli search` with ragkit imported from ``source``."""
    env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1"}
    code = PROBE.format(query=QUERY, index=str(index))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env,
                          cwd="/tmp")
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"search from {source} failed:\n{done.stderr}")
    return seconds, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, default=Path("/tmp/ragkit-samples.ragkit"))
    parser.add_argument("--old-ref", default="833568a", help="the commit before issue 21's embedders")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ensure_index(args.index)
    old = ensure_old(args.old_ref)
    search_seconds(ROOT, args.index)  # warm the page cache (and the ONNX export, once per machine) for both
    search_seconds(old, args.index)
    times: dict[str, list[float]] = {"old (torch, sentence-transformers)": [], "new (ONNX Runtime + tokenizers)": []}
    probes = {}
    for _ in range(args.runs):
        for label, source in zip(times, (old, ROOT)):
            seconds, probes[label] = search_seconds(source, args.index)
            times[label].append(seconds)
    base = statistics.median(times["old (torch, sentence-transformers)"])
    print(f"`ragkit search {QUERY!r}` on {args.index}, median of {args.runs} fresh processes, interleaved")
    print("| path | median wall (s) | min / max (s) | vs old | torch imported |")
    print("|---|---|---|---|---|")
    for label, values in times.items():
        median = statistics.median(values)
        ratio = "—" if label.startswith("old") else f"{base / median:.1f}x faster"
        print(f"| {label} | {median:.2f} | {min(values):.2f} / {max(values):.2f} | {ratio} "
              f"| {probes[label].split(': ')[-1]} |")


if __name__ == "__main__":
    main()
