"""`ragkit serve` under load: req/s and latency for /search and chat with a fixed number of clients.

    python benchmarks/server.py [--clients 32] [--seconds 8] [--index kb.ragkit] [--baseline-src DIR]

Each phase starts `ragkit serve` in its own process (the real embedding model, a loopback stand-in
upstream answering chat in ``--upstream-ms``), waits for ``/health``, then drives it from this
process with ``--clients`` concurrent clients for ``--seconds`` (in ``--rounds`` turns interleaved
with the other phases of the same route) and prints req/s, p50 and p99 latency, errors, and the
server process's CPU milliseconds per request. Every query is distinct (the server caches the
last 256 query vectors, which would hide the embedding cost).

Phases: ``/search`` with query batching off (``--no-batching``) and on, side by side; chat (JSON,
non-streaming). With ``--baseline-src DIR`` (a source tree of an older ragkit, e.g. from
``git archive ddda9cf ragkit | tar -x -C DIR``) the same /search and chat phases also run against it,
for a before/after in one run. Without ``--index``, the sample folder is indexed once into
``--work`` (about 250 chunks).

The numbers are only as steady as the machine: on a small shared machine, other work moves them by
tens of percent from run to run; compare phases of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "bees", "colony", "queen", "varroa", "mites", "swarm", "honey", "harvest", "frames", "wax", "brood", "larvae",
    "foulbrood", "hive", "winter", "spring", "feeding", "sugar", "syrup", "smoke", "inspection", "extractor",
    "supers", "nectar", "pollen", "drones", "workers", "eggs", "treatment", "oxalic", "acid", "requeen", "splits",
    "nuc", "apiary",
)


def stand_in_upstream(delay: float) -> tuple[ThreadingHTTPServer, str]:
    """An OpenAI-style chat server on loopback that answers every request after ``delay`` seconds."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(delay)
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Swarm in May [1]."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


_NUMBERS = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(index: Path, upstream: str, src: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "ragkit.cli", "serve", "--index", str(index), "--upstream", upstream, "--model", "m",
           "--port", str(port), "--retries", "0", *extra]
    # cwd=src: `python -m` puts the working directory first on sys.path, before PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ragkit serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(root + "/health", timeout=1).status_code == 200:
                return proc, root
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("ragkit serve did not come up in 120 s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def query(rng: random.Random, n: int) -> str:
    return " ".join(rng.sample(WORDS, 4)) + f" {n}"


async def drive(root: str, route: str, clients: int, seconds: float) -> dict[str, Any]:
    rng, counter = random.Random(route), _NUMBERS  # one count for the whole run: no query text repeats
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds

    def request() -> tuple[str, dict[str, Any]]:
        q = query(rng, next(counter))
        if route == "search":
            return "/search", {"query": q, "k": 5}
        return "/v1/chat/completions", {"model": "ragkit", "messages": [{"role": "user", "content": q}]}

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            path, body = request()
            started = time.perf_counter()
            try:
                status = (await client.post(root + path, json=body)).status_code
                kind = "" if status == 200 else f"HTTP {status}"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            if kind:
                errors[kind] = errors.get(kind, 0) + 1
            else:
                latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        took = time.perf_counter() - began
    return {"n": len(latencies), "seconds": took, "latencies": latencies, "errors": errors}


def phases(route: str, plan: list[tuple[str, Path, list[str]]], args: argparse.Namespace, index: Path,
           upstream: str) -> None:
    """Start one server per phase of ``route``, then drive them in turn, ``--rounds`` times (interleaved,
    so a change in the machine's other load falls on every phase alike), and print one row each."""
    servers = [(name, *start_server(index, upstream, src, extra)) for name, src, extra in plan]
    try:
        for _, _, root in servers:
            asyncio.run(drive(root, route, min(4, args.clients), 1.0))  # warm up: first requests, caches
        totals: dict[str, dict[str, Any]] = {name: {"n": 0, "s": 0.0, "cpu": 0.0, "lat": [], "errors": {}}
                                              for name, _, _ in servers}
        for _ in range(args.rounds):
            for name, proc, root in servers:
                cpu0 = cpu_seconds(proc.pid)
                result = asyncio.run(drive(root, route, args.clients, args.seconds / args.rounds))
                total = totals[name]
                total["cpu"] += cpu_seconds(proc.pid) - cpu0
                total["n"] += result["n"]
                total["s"] += result["seconds"]
                total["lat"] += result["latencies"]
                for kind, count in result["errors"].items():
                    total["errors"][kind] = total["errors"].get(kind, 0) + count
        for name, total in totals.items():
            lat = np.array(total["lat"] or [float("nan")]) * 1000
            errors = sum(total["errors"].values())
            print(f"| {name:<34} | {total['n'] / total['s']:7.1f} | {np.percentile(lat, 50):7.1f} | "
                  f"{np.percentile(lat, 99):7.1f} | {total['cpu'] / max(1, total['n']) * 1000:10.1f} | {errors:6d} |"
                  + (f" {total['errors']}" if errors else ""), flush=True)
    finally:
        for _, proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)


def build_index(work: Path) -> Path:
    index = work / "samples.ragkit"
    if not index.exists():
        from ragkit import Index

        with Index(index, show_progress=False) as ix:
            ix.sync(ROOT / "samples" / "docs")
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase, all rounds together (default 8)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per phase (default 4)")
    parser.add_argument("--index", type=Path, help="an index to serve (default: the samples, built once)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ragkit-bench-server"))
    parser.add_argument("--upstream-ms", type=float, default=50.0, help="the stand-in upstream's answer time")
    parser.add_argument("--baseline-src", type=Path, help="source tree of an older ragkit to compare with")
    parser.add_argument("--skip", action="append", default=[], choices=["search", "chat"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    index = args.index or build_index(args.work)
    upstream_server, upstream = stand_in_upstream(args.upstream_ms / 1000)
    print(f"{args.clients} clients, {args.seconds:g} s per phase, {os.cpu_count()} CPUs, index {index}, "
          f"stand-in upstream {args.upstream_ms:g} ms\n")
    print("| phase                              |   req/s | p50 ms  | p99 ms  | CPU ms/req | errors |")
    print("|------------------------------------|---------|---------|---------|------------|--------|")
    search = [("/search, baseline", args.baseline_src, [])] if args.baseline_src else []
    search += [("/search, batching off", ROOT, ["--no-batching"]), ("/search, batching on", ROOT, [])]
    chat = [("chat, baseline (client per call)", args.baseline_src, [])] if args.baseline_src else []
    chat += [("chat, pooled upstream client", ROOT, [])]
    try:
        for route, plan in (("search", search), ("chat", chat)):
            if route not in args.skip:
                phases(route, plan, args, index, upstream)
    finally:
        upstream_server.shutdown()


if __name__ == "__main__":
    main()
