"""`ragkit search` wall time on the samples index: the old path (torch) against the new (ONNX Runtime).

    python benchmarks/cli_latency.py [--index /tmp/ragkit-samples.ragkit] [--old-ref 833568a] [--also REF] [--runs 5]

"Old" is ragkit at ``--old-ref`` (before issue 21: every search imported torch and
sentence-transformers), checked out once into a git worktree beside this one and run from there;
"new" is this checkout. Each searches the samples indexed by its own code (built first if missing:
an older ragkit may not read a newer index), in fresh processes, interleaved old/new, ``--runs`` times
each; the table gives the median and the ratio, and whether the new process imported torch at all.
``--also REF`` (repeatable) adds rows for other commits, run the same way (e.g. the commit before a
change to the search path). The load average is printed with the table: on a shared machine it
inflates every row.
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


def ensure_index(index: Path, source: Path = ROOT) -> Path:
    """The samples indexed by the ragkit at ``source`` (an older ragkit may not read a newer index)."""
    if not index.exists():
        env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-m", "ragkit.cli", "index", str(ROOT / "samples/docs"), "--index", str(index),
                        "-q"], check=True, cwd="/tmp", env=env, capture_output=True)
    return index


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
    parser.add_argument("--also", action="append", default=[], metavar="REF", help="another commit to time too")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    refs = {"old (torch, sentence-transformers)": args.old_ref} | {f"{r} (ONNX Runtime + tokenizers)": r for r in args.also}
    sources = {label: ensure_old(ref) for label, ref in refs.items()}
    indexes = {label: ensure_index(args.index.with_name(f"{args.index.stem}-{ref}{args.index.suffix}"), sources[label])
               for label, ref in refs.items()}
    sources["new (ONNX Runtime + tokenizers)"], indexes["new (ONNX Runtime + tokenizers)"] = ROOT, ensure_index(args.index)
    for label, source in sources.items():  # warm the page cache (and the ONNX export, once per machine) for all
        search_seconds(source, indexes[label])
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {label: [] for label in sources}
    probes = {}
    for _ in range(args.runs):
        for label, source in sources.items():
            seconds, probes[label] = search_seconds(source, indexes[label])
            times[label].append(seconds)
    base = statistics.median(times["old (torch, sentence-transformers)"])
    load = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(load_before, os.getloadavg()))
    print(f"`ragkit search {QUERY!r}` on {args.index}, median of {args.runs} fresh processes, interleaved; "
          f"load average (1/5/15 min, start/end) {load} on {os.cpu_count()} CPUs")
    print("| path | median wall (s) | min / max (s) | vs old | torch imported |")
    print("|---|---|---|---|---|")
    for label, values in times.items():
        median = statistics.median(values)
        ratio = "—" if label.startswith("old") else f"{base / median:.1f}x faster"
        print(f"| {label} | {median:.2f} | {min(values):.2f} / {max(values):.2f} | {ratio} "
              f"| {probes[label].split(': ')[-1]} |")


if __name__ == "__main__":
    main()
