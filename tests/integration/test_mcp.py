"""``ragkit mcp`` as a desktop client and an agent meet it: the official ``mcp`` client over stdio (a
subprocess) and over streamable HTTP (a server on 127.0.0.1, a free port, with a bearer token), on
the real sample index. Every server started here is stopped here, with bounded waits."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason='needs pip install "ragkit[mcp]"')

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

TOKEN = "test-token-4f1c"
QUERY = "how do I treat varroa mites"
DEADLINE = 120  # seconds: the model loads in the server process before it answers


async def exercise(session: ClientSession) -> dict[str, Any]:
    """What an agent does: list tools, search, open the cited source, make a mistake, carry on."""
    await session.initialize()
    tools = {t.name for t in (await session.list_tools()).tools}
    found = await session.call_tool("search", {"query": QUERY, "k": 3})
    top = found.structured_content["passages"][0]
    document = await session.call_tool("get_document", {"doc_id": top["doc_id"]})
    resource = await session.read_resource(top["uri"])
    malformed = await session.call_tool("search", {"query": QUERY, "filters": {"colour": "red"}})
    after = await session.call_tool("search", {"query": "when do bees swarm", "k": 2})
    return {"tools": tools, "found": found, "document": document, "resource": resource,
            "malformed": malformed, "after": after}


def check(seen: dict[str, Any], index_dir: Path) -> None:
    from ragkit import Index

    assert seen["tools"] == {"search", "get_passage", "get_document", "build_prompt", "list_sources"}
    passages = seen["found"].structured_content["passages"]
    with Index(index_dir, create=False, show_progress=False) as index:
        expected = index.search(QUERY, 3)
    assert [p["chunk_id"] for p in passages] == [h.chunk_id for h in expected]
    top = passages[0]
    assert top["source"] and top["text"] and "page" in top
    assert top["bm25_rank"] is not None or top["dense_rank"] is not None
    assert {"score", "bm25_score", "bm25_rank", "dense_score", "dense_rank"} <= set(top)
    opened = seen["document"].structured_content
    assert opened["doc_id"] == top["doc_id"] and top["chunk_id"] in opened["passages"]
    assert seen["resource"].contents[0].text == opened["text"]
    assert seen["malformed"].is_error and "unknown filter field 'colour'" in seen["malformed"].content[0].text
    assert not seen["after"].is_error and len(seen["after"].structured_content["passages"]) == 2


def server_command(index_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ragkit.cli", "mcp", "--index", str(index_dir), *extra]


def test_stdio(built_samples: tuple[Path, Path]) -> None:
    index_dir, _ = built_samples
    command = server_command(index_dir)
    params = StdioServerParameters(command=command[0], args=command[1:],
                                   env={"HF_HUB_OFFLINE": "1", "PYTHONPATH": os.getcwd()})

    async def main() -> dict[str, Any]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            return await asyncio.wait_for(exercise(session), DEADLINE)  # the client stops the process

    check(asyncio.run(main()), index_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_server(index_dir: Path, port: int) -> Iterator[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAGKIT_SERVER_TOKEN", None)
    process = subprocess.Popen(server_command(index_dir, "--http", "--port", str(port), "--token", TOKEN),
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = time.monotonic()
        while True:
            if process.poll() is not None:
                raise AssertionError(f"ragkit mcp exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() - started < DEADLINE, "ragkit mcp --http did not start listening"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as anyio's task groups raise them."""
    inner = getattr(exc, "exceptions", None)  # duck-typed: Python 3.10 has no built-in ExceptionGroup
    if isinstance(inner, tuple):
        return [leaf for e in inner for leaf in leaves(e)]
    return [exc]


def test_streamable_http_with_and_without_the_token(built_samples: tuple[Path, Path]) -> None:
    index_dir, _ = built_samples
    with http_server(index_dir, free_port()) as url:
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "search", "arguments": {"query": QUERY}}}
        headers = {"Accept": "application/json, text/event-stream"}
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = httpx2.post(url, json=call, headers={**headers, **auth}, timeout=30)
            assert refused.status_code == 401 and "varroa" not in refused.text.lower(), auth

        async def without_token() -> None:
            async with httpx2.AsyncClient(timeout=30) as http, \
                    streamable_http_client(url, http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                await asyncio.wait_for(session.initialize(), 30)

        with pytest.raises(Exception) as refused_session:  # the handshake itself is refused
            asyncio.run(asyncio.wait_for(without_token(), 60))
        assert "Server returned an error response" in str(leaves(refused_session.value))

        async def with_token() -> dict[str, Any]:
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http, \
                    streamable_http_client(url, http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                return await asyncio.wait_for(exercise(session), DEADLINE)

        check(asyncio.run(with_token()), index_dir)
