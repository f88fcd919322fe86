"""An MCP server over an index (``ragkit mcp``), built on the official ``mcp`` SDK's ``MCPServer``.

Tools: ``search``, ``get_passage``, ``get_document``, ``build_prompt``, ``list_sources`` and, only
when the server is given folders to sync, ``sync``. Resources: every indexed document, at
``ragkit://documents/<doc_id>``, so a client can open a cited source.

A ragkit error (a bad filter, an unknown id) becomes a tool error carrying the library's own
message (``isError`` in the result, which the model reads); a resource that does not exist is the
protocol's invalid-params error. Neither ends the session: the next call works.

Over HTTP behind :class:`~ragkit.server.auth.BearerAuth` with a server config file, each call is
the caller's: its principal's scope is ANDed with every search (``search``, ``build_prompt``), and
``get_passage``, ``get_document``, ``list_sources`` and the resources show only documents whose own
metadata passes the scope, answering for any other id exactly as for one that does not exist. Only
an unrestricted caller may ``sync``. Over stdio (one local user) nothing is scoped.

>>> server = create_server(Index("kb.ragkit"))   # doctest: +SKIP
>>> server.run("stdio")                           # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from ragkit.errors import ConfigError, RagkitError
from ragkit.index import Index
from ragkit.integrations.records import DocumentStore, hit_record, install_hint
from ragkit.pipeline.rag import RAG
from ragkit.prompting.builder import PromptBuilder
from ragkit.server.auth import principal_of
from ragkit.server.scoping import ScopedIndex, admits
from ragkit.types import Chunk, Document

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
    from mcp.types import ListResourcesResult, Resource, ToolAnnotations
    from pydantic import Field
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise install_hint("mcp", exc) from exc

__all__ = ["DOCUMENT_URI", "create_server", "document_uri"]

DOCUMENT_URI = "ragkit://documents/"
Mode = Literal["hybrid", "bm25", "dense"]
FILTERS_HELP = (
    "ragkit metadata filters, all must hold: {\"source\": \"health/varroa-mites.md\"}, "
    "{\"type\": {\"in\": [\"markdown\", \"pdf\"]}}, {\"page\": {\"gte\": 2}}, {\"source\": {\"glob\": \"health/*\"}}. "
    "Fields: doc_id, chunk_id, source, title, type, page, headings. See list_sources for what exists."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# Module level, not inside a function: the SDK resolves these (string) annotations in this module's globals.
K = Annotated[int, Field(ge=1, le=50, description="how many passages to return (1-50)")]
Filters = Annotated[dict[str, Any] | None, Field(description=FILTERS_HELP)]
Folder = Annotated[str | None, Field(description="a start folder's name (see the description); default the first")]
ModeArg = Annotated[Mode, Field(description="hybrid (default) fuses keyword (bm25) and semantic (dense) search")]


def document_uri(doc_id: str) -> str:
    """The resource URI of a document (its id, percent-encoded, slashes kept)."""
    return DOCUMENT_URI + quote(doc_id, safe="/")


def request_scope(request: Any) -> dict[str, Any] | None:
    """The scope of the principal behind an HTTP request (None: unrestricted, as over stdio)."""
    return principal_of(request).scope() if request is not None else None


def call_scope(ctx: Context) -> dict[str, Any] | None:
    """The scope of the caller of a tool or resource: the HTTP request it arrived on, if any."""
    try:
        request = ctx.request_context.request
    except ValueError:  # called outside any request (a tool run directly, in-process)
        return None
    return request_scope(request)


class ScopedStore(DocumentStore):
    """The documents of ``store`` whose own metadata passes ``scope``; any other id is "not found".

    Judged on the document's metadata, not its passages': a scope on a passage-level field (``page``,
    ``headings``) is a field documents lack, so it hides every document here (closed, never open).
    Shares the caches of ``store``; made for one call, so it keeps what it admitted.
    """

    def __init__(self, store: DocumentStore, scope: dict[str, Any]) -> None:
        super().__init__(store.index)
        self.base, self.scope = store, scope

    def refresh(self) -> None:
        self.base.refresh()
        self._documents = None

    def documents(self) -> dict[str, Document]:
        if self._documents is None:
            docs = self.base.documents()
            records = [{**d.metadata, "doc_id": d.id} for d in docs.values()]
            self._documents = {i: d for (i, d), ok in zip(docs.items(), admits(self.scope, records)) if ok}
        return self._documents

    def chunks(self, doc_id: str) -> list[Chunk]:
        self.document(doc_id)  # raises, as for a missing id, outside the scope
        chunks = self.base.chunks(doc_id)
        return [c for c, ok in zip(chunks, admits(self.scope, _records(chunks))) if ok]


def _records(chunks: Sequence[Chunk]) -> list[dict[str, Any]]:
    return [{**c.metadata, "doc_id": c.doc_id, "chunk_id": c.id} for c in chunks]


def view(store: DocumentStore, scope: dict[str, Any] | None) -> DocumentStore:
    """What a caller with ``scope`` may open of ``store``."""
    return store if scope is None else ScopedStore(store, scope)


class RagkitMCP(MCPServer):
    """``MCPServer`` whose resource list is the index's documents (those the caller may see), read
    when a client asks."""

    def __init__(self, store: DocumentStore, **options: Any) -> None:
        super().__init__(**options)
        self.store = store

    async def _handle_list_resources(self, ctx: Any, params: Any) -> ListResourcesResult:
        # The SDK's public list_resources() takes no request context; this handler is what the
        # low-level server calls with it, so the list can be the caller's own.
        return ListResourcesResult(resources=self.resources(request_scope(getattr(ctx, "request", None))))

    async def list_resources(self) -> list[Resource]:
        return self.resources(None)

    def resources(self, scope: dict[str, Any] | None) -> list[Resource]:
        return [
            Resource(uri=document_uri(doc.id), name=doc.id, title=doc.metadata.get("title") or None,
                     mime_type="text/plain", description=f"indexed document {doc.metadata.get('source') or doc.id}")
            for doc in view(self.store, scope).documents().values()
        ]


def create_server(
    index: Index, *, sync_folders: Sequence[str | os.PathLike[str]] = (), template: str = "qa",
    max_tokens: int = 4096, name: str = "ragkit",
) -> MCPServer:
    """The MCP server for ``index``. ``sync_folders``: the folders the ``sync`` tool may sync (none:
    no ``sync`` tool). ``template``/``max_tokens``: how ``build_prompt`` builds (fixed here, so a
    client cannot name a template file on the server's disk)."""
    store = DocumentStore(index)
    roots = [Path(f).resolve() for f in sync_folders]
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--allow-sync {root}: not a folder")
    server = RagkitMCP(store, name=name, log_level="WARNING", instructions=(
        "Search a private document index (hybrid BM25 + dense). Call search first; cite passages by "
        "source and page; open a cited source with get_document or the ragkit://documents/ resource."))
    builder = PromptBuilder(template, max_tokens=max_tokens, reserve_tokens=min(512, max_tokens // 4))
    _add_search_tools(server, index, store, builder)
    _add_resources(server, store)
    if roots:
        _add_sync(server, index, store, roots)
    return server


def _tool_errors(fn: Any) -> Any:
    """Run a tool, turning ragkit's errors into tool errors with the same message."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RagkitError as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def _passage(chunk: Chunk) -> dict[str, Any]:
    return {"chunk_id": chunk.id, "doc_id": chunk.doc_id, "text": chunk.text, "start": chunk.start,
            "end": chunk.end, **dict(chunk.metadata), "uri": document_uri(chunk.doc_id)}


def _add_search_tools(server: MCPServer, index: Index, store: DocumentStore, builder: PromptBuilder) -> None:
    @server.tool(annotations=READ_ONLY, description=(
        "Search the index for passages relevant to a query. Returns passages best first, each with its text, "
        "source (file path), page (PDFs), title, headings, chunk_id, the fused score and each leg's evidence "
        "(bm25_score/bm25_rank for keywords, dense_score/dense_rank for meaning; a rank is null where that "
        "leg did not return the passage, and its score is then the exact score fusion filled in)."))
    @_tool_errors
    def search(query: Annotated[str, Field(min_length=1, description="what to look for, in natural language")],
               ctx: Context, k: K = 5, mode: ModeArg = "hybrid", filters: Filters = None) -> dict[str, Any]:
        hits = ScopedIndex(index, call_scope(ctx)).search(query, k, mode=mode, filters=filters)
        return {"query": query, "passages": [{**hit_record(h, text=True), "uri": document_uri(h.doc_id)}
                                             for h in hits]}

    @server.tool(annotations=READ_ONLY, description=(
        "Open one passage by its chunk_id (as search returns it, e.g. 'health/varroa-mites.md#4') with the "
        "passages just before and after it, for more context around a hit."))
    @_tool_errors
    def get_passage(chunk_id: Annotated[str, Field(min_length=1, description="a chunk_id from search")],
                    ctx: Context,
                    neighbours: Annotated[int, Field(ge=0, le=10, description="passages on each side")] = 1
                    ) -> dict[str, Any]:
        chunk, before, after = view(store, call_scope(ctx)).passage(chunk_id, neighbours)
        return {"passage": _passage(chunk), "before": [_passage(c) for c in before],
                "after": [_passage(c) for c in after]}

    @server.tool(annotations=READ_ONLY, description=(
        "Open a whole indexed document by its doc_id (search's doc_id, e.g. 'health/varroa-mites.md'): its "
        "text, metadata and the ids of its passages. Long texts are cut at max_chars (truncated is then true)."))
    @_tool_errors
    def get_document(doc_id: Annotated[str, Field(min_length=1, description="a doc_id from search")],
                     ctx: Context,
                     max_chars: Annotated[int, Field(ge=1, description="most characters of text returned")]
                     = 100_000) -> dict[str, Any]:
        mine = view(store, call_scope(ctx))
        doc = mine.document(doc_id)
        passages = [c.id for c in mine.chunks(doc_id)]
        return {"doc_id": doc.id, "uri": document_uri(doc.id), "metadata": dict(doc.metadata),
                "text": doc.text[:max_chars], "truncated": len(doc.text) > max_chars, "passages": passages}

    @server.tool(annotations=READ_ONLY, description=(
        "Retrieve passages for a question and build the grounded prompt ragkit would send to a model: chat "
        "messages that number the passages [1], [2], ... and the citations those markers stand for. For "
        "agents that call their own model with these messages."))
    @_tool_errors
    def build_prompt(question: Annotated[str, Field(min_length=1, description="the user's question")],
                     ctx: Context, k: K = 5, mode: ModeArg = "hybrid", filters: Filters = None) -> dict[str, Any]:
        # the builder holds no few-shot examples, so the scoped index is the whole scope
        prompt = RAG(ScopedIndex(index, call_scope(ctx)), builder, k=k, mode=mode, filters=filters).prepare(question).prompt
        citations = [{"marker": c.marker, "chunk_id": c.chunk_id, "doc_id": c.doc_id, "source": c.source,
                      "page": c.page, "title": c.title, "score": c.score, "text": c.text,
                      "uri": document_uri(c.doc_id)} for c in prompt.citations.values()]
        return {"messages": prompt.messages, "citations": citations, "token_count": prompt.token_count,
                "context_sufficient": prompt.context_sufficient}

    @server.tool(annotations=READ_ONLY, description=(
        "What the index holds: document and passage counts, documents per folder and per type, and the "
        "sources (up to 500). Use it to pick filters for search."))
    @_tool_errors
    def list_sources(ctx: Context) -> dict[str, Any]:
        return _sources(index, view(store, call_scope(ctx)))


def _sources(index: Index, store: DocumentStore, limit: int = 500) -> dict[str, Any]:
    docs = list(store.documents().values())
    scoped = isinstance(store, ScopedStore)  # the index's own count would tell what lies outside
    sources = sorted(str(d.metadata.get("source") or d.id) for d in docs)
    folders = Counter(s.rpartition("/")[0] or "." for s in sources)
    types = Counter(str(d.metadata.get("type") or "unknown") for d in docs)
    info = index.info()
    passages = sum(len(store.chunks(d.id)) for d in docs) if scoped else info.get("chunks")
    return {"documents": len(docs), "passages": passages, "model": info.get("model"),
            "folders": dict(sorted(folders.items())), "types": dict(types.most_common()),
            "sources": sources[:limit], "sources_truncated": len(sources) > limit}


def _add_resources(server: MCPServer, store: DocumentStore) -> None:
    @server.resource(DOCUMENT_URI + "{+doc_id}", name="document", mime_type="text/plain",
                     description="an indexed document's text, by doc_id")
    def document(doc_id: str, ctx: Context) -> str:
        doc = view(store, call_scope(ctx)).documents().get(doc_id)
        if doc is None:
            raise ResourceNotFoundError(f"no document with id {doc_id!r} in the index")
        return doc.text


def _add_sync(server: MCPServer, index: Index, store: DocumentStore, roots: list[Path]) -> None:
    names = ", ".join(repr(r.name) for r in roots)

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True, open_world_hint=False),
                 description=(f"Re-index a folder this server was started with ({names}): add new and changed files, "
                              "drop deleted ones. No other folder can be synced."))
    @_tool_errors
    def sync(ctx: Context, folder: Folder = None) -> dict[str, Any]:
        if call_scope(ctx) is not None:  # its report names files outside the caller's scope
            raise ConfigError("sync needs an unrestricted principal (filters = {} in the server config); "
                              "this token's scope covers only part of the index")
        root = allowed_folder(folder, roots)
        report = index.sync(root, show_progress=False)
        store.refresh()
        return {"folder": root.name, "summary": report.summary(), "added": list(report.added),
                "updated": list(report.updated), "removed": list(report.removed),
                "failed": [{"path": f.path, "reason": f.reason} for f in report.failed]}


def allowed_folder(folder: str | None, roots: Sequence[Path]) -> Path:
    """The start folder ``folder`` names (by name or by a path that resolves to it), else a ConfigError:
    a client can never point ``sync`` anywhere else (``..``, absolute paths and symlinks resolve first)."""
    if folder is None or folder == "":
        return roots[0]
    for root in roots:
        if folder == root.name:
            return root
    candidate = Path(folder)
    if candidate.is_absolute() and candidate.resolve() in roots:
        return candidate.resolve()
    allowed = ", ".join(repr(r.name) for r in roots)
    raise ConfigError(f"sync can only sync the folders this server was started with ({allowed}), "
                      f"not {folder!r}")
