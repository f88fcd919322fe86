"""Talk to `ragkit mcp` the way a desktop client or an agent does, with the official MCP client.

    pip install ".[mcp]"
    python samples/index_folder.py                      # builds samples/kb.ragkit once
    python samples/mcp_client.py ["your question"]      # starts `ragkit mcp` over stdio, then stops it
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).parent
question = sys.argv[1] if len(sys.argv) > 1 else "When should I treat my hives for varroa mites?"


async def main() -> None:
    server = StdioServerParameters(command=sys.executable,
                                   args=["-m", "ragkit.cli", "mcp", "--index", os.environ.get("RAGKIT_INDEX", str(HERE / "kb.ragkit"))])
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        print("tools:", ", ".join(t.name for t in (await session.list_tools()).tools))
        found = (await session.call_tool("search", {"query": question, "k": 3})).structured_content
        for p in found["passages"]:
            print(f"  {p['rank']}. {p['score']:.3f} bm25 #{p['bm25_rank']} dense #{p['dense_rank']}  {p['source']}")
        top = found["passages"][0]
        source = await session.read_resource(top["uri"])  # open the cited source
        print(f"\n{top['uri']}:\n{source.contents[0].text[:300]}...")


asyncio.run(main())
