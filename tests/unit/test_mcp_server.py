"""The MCP server's tools, resources and errors through the official client, in-process (fake embedder).

The transports (stdio, streamable HTTP, the bearer token) are tested in tests/integration/test_mcp.py.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason='needs pip install "ragkit[mcp]"')

from mcp import Client
from mcp.shared.exceptions import MCPError

from ragkit.integrations.mcp_server import create_server, document_uri

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "docs"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLES, tmp_path / "docs")
    return tmp_path / "docs"


@pytest.fixture
def index(fake_index: Any, docs: Path) -> Any:
    fake_index.sync(docs)
    return fake_index


def talk(server: Any, body: Callable[[Client], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with Client(server) as client:
            return await asyncio.wait_for(body(client), 30)

    return asyncio.run(main())


def test_tools_have_schemas_and_sync_is_absent_by_default(index: Any) -> None:
    tools = talk(create_server(index), lambda c: c.list_tools()).tools
    names = {t.name for t in tools}
    assert names == {"search", "get_passage", "get_document", "build_prompt", "list_sources"}
    search = next(t for t in tools if t.name == "search")
    assert search.input_schema["required"] == ["query"] and "filters" in search.input_schema["properties"]
    assert all(len(t.description or "") > 60 for t in tools)


def test_search_then_open_the_cited_passage_and_document(index: Any) -> None:
    expected = index.search("varroa mites treatment", 3)

    async def body(c: Client) -> Any:
        found = (await c.call_tool("search", {"query": "varroa mites treatment", "k": 3})).structured_content
        top = found["passages"][0]
        passage = (await c.call_tool("get_passage", {"chunk_id": top["chunk_id"], "neighbours": 1})).structured_content
        document = (await c.call_tool("get_document", {"doc_id": top["doc_id"]})).structured_content
        resource = await c.read_resource(top["uri"])
        return found, passage, document, resource

    found, passage, document, resource = talk(create_server(index), body)
    assert [p["chunk_id"] for p in found["passages"]] == [h.chunk_id for h in expected]
    top = found["passages"][0]
    assert (top["score"], top["bm25_rank"], top["dense_rank"]) == (expected[0].score, expected[0].bm25_rank,
                                                                   expected[0].dense_rank)
    assert passage["passage"]["text"] == expected[0].text  # re-chunking finds the stored passage
    assert document["text"] == resource.contents[0].text and top["chunk_id"] in document["passages"]
    assert top["uri"] == document_uri(top["doc_id"])


def test_errors_carry_ragkits_message_and_the_session_survives(index: Any) -> None:
    async def body(c: Client) -> Any:
        bad_filter = await c.call_tool("search", {"query": "bees", "filters": {"colour": "red"}})
        bad_type = await c.call_tool("search", {"query": "bees", "k": "many"})
        unknown = await c.call_tool("get_passage", {"chunk_id": "nowhere.md#3"})
        with pytest.raises(MCPError, match="no document with id"):
            await c.read_resource(document_uri("nowhere.md"))
        after = await c.call_tool("search", {"query": "bees", "k": 1})
        return bad_filter, bad_type, unknown, after

    bad_filter, bad_type, unknown, after = talk(create_server(index), body)
    assert bad_filter.is_error and "unknown filter field 'colour'" in bad_filter.content[0].text
    assert bad_type.is_error and "k" in bad_type.content[0].text
    assert unknown.is_error and "no document with id 'nowhere.md'" in unknown.content[0].text
    assert not after.is_error and len(after.structured_content["passages"]) == 1


def test_build_prompt_and_list_sources(index: Any) -> None:
    async def body(c: Client) -> Any:
        prompt = await c.call_tool("build_prompt", {"question": "When do bees swarm?", "k": 2})
        sources = await c.call_tool("list_sources", {})
        resources = await c.list_resources()
        return prompt.structured_content, sources.structured_content, resources

    prompt, sources, resources = talk(create_server(index), body)
    assert prompt["messages"][-1]["role"] == "user" and [c["marker"] for c in prompt["citations"]] == [1, 2]
    assert "[1]" in "".join(m["content"] for m in prompt["messages"])
    assert sources["documents"] == len(index.documents()) and sources["folders"]["health"] > 0
    assert sources["types"]["pdf"] >= 1
    assert len(resources.resources) == sources["documents"]


def test_sync_only_reaches_the_start_folder(index: Any, docs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe launch code is 1234.\n")
    (docs / "new-note.md").write_text("# Queen marking\n\nMark the queen with a dot of paint.\n")

    async def body(c: Client) -> Any:
        refused = [await c.call_tool("sync", {"folder": f}) for f in
                   ("../outside", str(outside), "/", f"{docs}/../outside", "docs/../outside")]
        done = await c.call_tool("sync", {})
        again = await c.call_tool("sync", {"folder": str(docs)})
        return refused, done, again

    refused, done, again = talk(create_server(index, sync_folders=[docs]), body)
    for result in refused:
        assert result.is_error and "can only sync the folders this server was started with" in result.content[0].text
    assert done.structured_content["added"] == ["new-note.md"]
    assert not again.is_error and again.structured_content["added"] == []
    assert not any(h.source == "secret.md" for h in index.search("launch code", 10))
    assert any(d.id == "new-note.md" for d in index.documents())
