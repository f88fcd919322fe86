"""`ragkit serve` under load: req/s and latency for /search and chat with a fixed number of clients.

    python benchmarks/server.py [--clients 8 32 64] [--seconds 8] [--rounds 4] [--index kb.ragkit]
                                [--baseline-src DIR]

Each phase starts `ragkit serve` in its own process (the real embedding model, a loopback stand-in
upstream answering chat in ``--upstream-ms``) and waits for ``/health``. Then, for each
``--clients`` count, ``--rounds`` rounds drive every phase of the route in turn (each round in
another order), ``--seconds / --rounds`` each, so a change in the machine's other load falls on
every phase alike. The load comes from a separate process (``--drive``): plain HTTP/1.1 on asyncio
streams over keep-alive connections, each client sending its next request when the last is
answered. An in-process httpx client took 3 to 4 ms of CPU per request on the server's 2 cores
(a third of the server's own) and its pool queued requests: it measured itself, not the server.

A row gives the median of the rounds' req/s, the median of each round's ratio to the first phase
(the baseline when there is one), p50/p99 latency over all rounds, and the server's and the
client's CPU milliseconds per request. Every query is distinct across the whole run (the server
caches the last 256 query vectors, which would hide the embedding cost).

Phases: ``/search`` with query batching off (``--no-batching``) and on, side by side; chat (JSON,
non-streaming). With ``--baseline-src DIR`` (a source tree of an older ragkit, e.g.
``git archive ddda9cf ragkit templates | tar -x -C DIR``) the same phases also run against it, for
a before/after in one run; ``--also NAME=DIR`` adds a batching-on /search phase for another tree.
Without ``--index``, the sample folder is indexed once into ``--work`` (about 250 chunks).

The numbers are only as steady as the machine: on a small shared machine, other work moves them by
tens of percent from run to run; compare phases of one run (the ratio column), not runs.
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


def drive(root: str, route: str, clients: int, seconds: float, first: int) -> dict[str, Any]:
    """Run the load in a child process (``--drive``) and return what it measured: a client in the
    benchmark's own process would take the 2 cores' time from the server it measures (httpx's
    asyncio client spent 3 to 4 ms of CPU per request here, a third of the server's own)."""
    cmd = [sys.executable, __file__, "--drive", root, route, str(clients), str(seconds), str(first)]
    done = subprocess.run(cmd, capture_output=True, check=True, timeout=seconds + 120)
    return json.loads(done.stdout)


def request_bytes(root: str, route: str, q: str) -> bytes:
    if route == "search":
        path, body = "/search", {"query": q, "k": 5}
    else:
        path, body = "/v1/chat/completions", {"model": "ragkit", "messages": [{"role": "user", "content": q}]}
    data = json.dumps(body).encode()
    host = root.split("//", 1)[1]
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep the connection) of one HTTP/1.1 response, its body read and dropped."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(":") for line in head[1:])}
    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    else:
        await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers.get("connection") != "close"


async def load(root: str, route: str, clients: int, seconds: float, first: int) -> dict[str, Any]:
    """``clients`` keep-alive connections, each sending its next request as soon as the last is
    answered, for ``seconds``: a plain HTTP/1.1 client on asyncio streams (tens of microseconds of
    CPU per request), so the load measures the server, not the client."""
    rng, counter = random.Random(first), itertools.count(first)  # no query text repeats in a run
    host, port = root.split("//", 1)[1].rsplit(":", 1)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds

    async def client() -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.perf_counter() < stop:
            message = request_bytes(root, route, query(rng, next(counter)))
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection(host, int(port))
                connection[1].write(message)
                status, keep = await asyncio.wait_for(read_response(connection[0]), 60)
                kind = "" if status == 200 else f"HTTP {status}"
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                kind, keep = type(exc).__name__, False
            if not keep and connection is not None:
                connection[1].close()
                connection = None
            if kind:
                errors[kind] = errors.get(kind, 0) + 1
            else:
                latencies.append(time.perf_counter() - started)
        if connection is not None:
            connection[1].close()

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"n": len(latencies), "seconds": time.perf_counter() - began, "latencies": latencies,
            "errors": errors, "client_cpu": time.process_time() - cpu}


def phases(route: str, plan: list[tuple[str, Path, list[str]]], args: argparse.Namespace, index: Path,
           upstream: str) -> None:
    """Start one server per phase of ``route``, then drive them in turn, ``--rounds`` times for each
    ``--clients`` count (interleaved, each round in another order, so a change in the machine's other
    load falls on every phase alike), and print one row per phase and client count."""
    servers = [(name, *start_server(index, upstream, src, extra)) for name, src, extra in plan]
    try:
        for _, _, root in servers:
            drive(root, route, 4, 1.0, next(_STARTS))  # warm up: first requests, caches
        for clients in args.clients:
            rounds = [{name: measure(proc, root, route, clients, args.seconds / args.rounds)
                       for name, proc, root in rotated(servers, r)} for r in range(args.rounds)]
            for name, _, _ in servers:
                print(row(name, clients, rounds, servers[0][0]), flush=True)
    finally:
        for _, proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)


_STARTS = itertools.count(0, 10**7)  # each drive's first query number: no query text repeats in a run


def rotated(servers: list[Any], turn: int) -> list[Any]:
    return servers[turn % len(servers):] + servers[:turn % len(servers)]


def measure(proc: subprocess.Popen[bytes], root: str, route: str, clients: int, seconds: float) -> dict[str, Any]:
    cpu0 = cpu_seconds(proc.pid)
    result = drive(root, route, clients, seconds, next(_STARTS))
    return {**result, "cpu": cpu_seconds(proc.pid) - cpu0, "rps": result["n"] / result["seconds"]}


def row(name: str, clients: int, rounds: list[dict[str, dict[str, Any]]], first: str) -> str:
    """One table row: the median of the rounds' req/s (and of each round's ratio to the first
    phase), latency percentiles and CPU per request over all rounds together."""
    mine = [r[name] for r in rounds]
    n = sum(m["n"] for m in mine)
    lat = np.array([x for m in mine for x in m["latencies"]] or [float("nan")]) * 1000
    errors: dict[str, int] = {}
    for m in mine:
        for kind, count in m["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    ratio = float(np.median([r[name]["rps"] / max(r[first]["rps"], 1e-9) for r in rounds]))
    return (f"| {name:<32} | {clients:7d} | {np.median([m['rps'] for m in mine]):7.1f} | {ratio:5.2f}x | "
            f"{np.percentile(lat, 50):7.1f} | {np.percentile(lat, 99):7.1f} | "
            f"{sum(m['cpu'] for m in mine) / max(1, n) * 1000:10.1f} | "
            f"{sum(m['client_cpu'] for m in mine) / max(1, n) * 1000:10.2f} | {sum(errors.values()):6d} |"
            + (f" {errors}" if errors else ""))


def build_index(work: Path) -> Path:
    index = work / "samples.ragkit"
    if not index.exists():
        from ragkit import Index

        with Index(index, show_progress=False) as ix:
            ix.sync(ROOT / "samples" / "docs")
    return index


def main() -> None:
    if sys.argv[1:2] == ["--drive"]:  # the load, in its own process (see drive)
        root, route, clients, seconds, first = sys.argv[2:7]
        print(json.dumps(asyncio.run(load(root, route, int(clients), float(seconds), int(first)))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[32], help="client counts (default 32)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase, all rounds together (default 8)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per phase (default 4)")
    parser.add_argument("--index", type=Path, help="an index to serve (default: the samples, built once)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ragkit-bench-server"))
    parser.add_argument("--upstream-ms", type=float, default=50.0, help="the stand-in upstream's answer time")
    parser.add_argument("--baseline-src", type=Path, help="source tree of an older ragkit to compare with")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=DIR",
                        help="another source tree to serve /search from, batching on (repeatable)")
    parser.add_argument("--skip", action="append", default=[], choices=["search", "chat"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    index = args.index or build_index(args.work)
    upstream_server, upstream = stand_in_upstream(args.upstream_ms / 1000)
    print(f"{args.seconds:g} s per phase in {args.rounds} rounds, {os.cpu_count()} CPUs, index {index}, "
          f"stand-in upstream {args.upstream_ms:g} ms, load average {load_average()} at the start\n")
    print("| phase                            | clients |   req/s |  ratio | p50 ms  | p99 ms  | CPU ms/req | client CPU | errors |")
    print("|----------------------------------|---------|---------|--------|---------|---------|------------|------------|--------|")
    search = [("/search, baseline", args.baseline_src, [])] if args.baseline_src else []
    search += [("/search, batching off", ROOT, ["--no-batching"]), ("/search, batching on", ROOT, [])]
    search += [(f"/search, {name}", Path(src), []) for name, _, src in (a.partition("=") for a in args.also)]
    chat = [("chat, baseline (client per call)", args.baseline_src, [])] if args.baseline_src else []
    chat += [("chat, pooled upstream client", ROOT, [])]
    try:
        for route, plan in (("search", search), ("chat", chat)):
            if route not in args.skip:
                phases(route, plan, args, index, upstream)
    finally:
        upstream_server.shutdown()
    print(f"\nload average {load_average()} at the end")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
