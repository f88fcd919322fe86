"""Issue 20, the MCP server's HTTP transport under principals: `ragkit mcp --http --config FILE` (the
server config of `ragkit serve`) needs a principal's token, and every tool, resource and count is
that principal's own. The app `ragkit mcp` builds is served by uvicorn on loopback and driven by the
official client over streamable HTTP (fake embedder, the two-team index of the server tests)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason='needs pip install "ragkit[mcp]"')
uvicorn = pytest.importorskip("uvicorn")

import httpx2
from fakes import FakeEmbedder
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from servekit import TEAM_A, TEAM_B, TOKENS, serving, two_team_index, write_config

from ragkit.cli.commands import main
from ragkit.integrations.mcp_server import document_uri

IDS_A, IDS_B = {d.id for d in TEAM_A}, {d.id for d in TEAM_B}
OWN = {"alice": IDS_A, "bob": IDS_B, "carol": {"a-swarm", "b-queen"}}  # carol: the acl group "blue"
QUESTIONS = ["How do I treat varroa mites?", "What kills bee larvae, foulbrood?", "queen excluder honey supers"]


@pytest.fixture
def mcp_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ASGI app `ragkit mcp --http --config` would serve (uvicorn.run stubbed to hand it over)."""
    with two_team_index(tmp_path / "kb.ragkit"):
        pass
    (tmp_path / "docs").mkdir()
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app))
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert main(["mcp", "--index", str(tmp_path / "kb.ragkit"), "--http", "--allow-sync", str(tmp_path / "docs"),
                     "--config", str(write_config(tmp_path / "server.json"))]) == 0
        assert signal.getsignal(signal.SIGHUP) is not previous  # SIGHUP reloads the config
    finally:
        signal.signal(signal.SIGHUP, previous)
    return seen["app"]


@contextmanager
def serving_mcp(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on loopback, lifespan on (it runs the MCP session manager); its MCP URL."""
    with serving(app, lifespan="auto") as root:
        yield root + "/mcp"


async def what_one_caller_sees(url: str, token: str) -> dict[str, Any]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http, \
            streamable_http_client(url, http_client=http) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        seen: dict[str, Any] = {"searched": set(), "cited": set(), "texts": []}
        for q in QUESTIONS:
            for asked in (None, {"team": "a"}, {"team": "b"}, {"team": {"in": ["a", "b"]}}):
                found = await s.call_tool("search", {"query": q, "k": 6, "filters": asked})
                assert not found.is_error, found.content
                seen["searched"] |= {p["doc_id"] for p in found.structured_content["passages"]}
                seen["texts"].append(str(found.structured_content))
            prompt = (await s.call_tool("build_prompt", {"question": q, "k": 6})).structured_content
            seen["cited"] |= {c["doc_id"] for c in prompt["citations"]}
            seen["texts"].append(str(prompt["messages"]))
        seen["sources"] = (await s.call_tool("list_sources", {})).structured_content
        seen["resources"] = {r.name for r in (await s.list_resources()).resources}
        seen["opened"], seen["refused"] = set(), {}
        for doc_id in sorted(IDS_A | IDS_B):
            document = await s.call_tool("get_document", {"doc_id": doc_id})
            passage = await s.call_tool("get_passage", {"chunk_id": f"{doc_id}#0"})
            try:
                await s.read_resource(document_uri(doc_id))
                resource_ok = True
            except MCPError as exc:
                resource_ok, seen["refused"][doc_id] = False, str(exc)
            if not document.is_error and not passage.is_error and resource_ok:
                seen["opened"].add(doc_id)
            elif document.is_error and passage.is_error and not resource_ok:
                seen["refused"][doc_id] += " | " + document.content[0].text
        seen["sync"] = await s.call_tool("sync", {})
        return seen


def test_disjoint_principals_see_only_their_own_documents_through_every_tool(mcp_app: Any) -> None:
    texts = {d.id: d.text for d in TEAM_A + TEAM_B}
    with serving_mcp(mcp_app) as url:
        for name, own in OWN.items():
            seen = asyncio.run(asyncio.wait_for(what_one_caller_sees(url, TOKENS[name]), 60))
            assert seen["searched"] == own and seen["cited"] <= own and seen["cited"], name
            others = [texts[d][:30] for d in texts if d not in own]
            assert not any(t in text for t in others for text in seen["texts"]), name
            sources = seen["sources"]
            assert (sources["documents"], sources["passages"]) == (len(own), len(own)), name  # one passage each
            assert set(sources["sources"]) == {d.metadata["source"] for d in TEAM_A + TEAM_B if d.id in own}
            assert seen["resources"] == own and seen["opened"] == own, name
            assert set(seen["refused"]) == set(texts) - own  # refused by every route, as if missing
            assert all("no document with id" in why for why in seen["refused"].values())
            assert seen["sync"].is_error and "unrestricted principal" in seen["sync"].content[0].text


def test_a_call_without_a_principals_token_is_refused_before_the_mcp_app(mcp_app: Any) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "search", "arguments": {"query": "varroa"}}}
    with serving_mcp(mcp_app) as url:
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKENS["alice"]}):
            refused = httpx2.post(url, json=call, headers={"Accept": "application/json, text/event-stream", **auth},
                                  timeout=30)
            assert refused.status_code == 401 and "varroa" not in refused.text.lower(), auth


def test_config_is_for_http_only_and_a_bad_file_stops_it_before_the_model_loads(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "server.json"
    bad.write_text('{"principals": [{"name": "x", "token_sha256": "abc"}]}')
    assert main(["mcp", "--index", str(tmp_path / "none.ragkit"), "--config", str(bad)]) == 2
    assert "--config applies to --http only" in capsys.readouterr().err
    assert main(["mcp", "--index", str(tmp_path / "none.ragkit"), "--http", "--config", str(bad)]) == 2
    assert "token_sha256" in capsys.readouterr().err
