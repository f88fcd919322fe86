"""The playground's routes: HTML views under ``/ui/`` (Jinja2, autoescaped) and ``POST /v1/feedback``.

Views are fragments the page's script fetches with the bearer token and puts in place; each is
rendered from :mod:`~ragkit.server.playground.views` values by a template in ``templates/``.
``POST /v1/feedback`` is JSON: ``{"completion_id", "rating": "up"|"down"|null, "correction", "comment"}``
-> ``{"object": "feedback", "id", "completion_id", "rating", "approved"}``; an id the server does not
remember (older than its last RECENT_COMPLETIONS answers, or from before a restart) is a 404.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import re
from pathlib import Path
from typing import Any, Literal

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from ragkit.errors import ConfigError, RagkitError
from ragkit.feedback.examples import as_example
from ragkit.feedback.record import RecentCompletions, common_metadata
from ragkit.feedback.store import FeedbackStore
from ragkit.prompting.builder import PromptBuilder
from ragkit.prompting.examples import ExampleSet
from ragkit.prompting.templates import builtin_dir, builtin_names, load_template
from ragkit.retrieval.settings import FUSION_METHODS, SEARCH_MODES
from ragkit.server.playground import views
from ragkit.server.playground.access import SECURITY_HEADERS, in_scope, narrowed, principal_of
from ragkit.server.principals import narrow
from ragkit.types import Document

__all__ = ["Playground", "router"]

logger = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"
_NOT_IN_CONTEXT = re.compile(r"context does not contain", re.IGNORECASE)
MAX_FIELD_DOCUMENTS = 5000  # documents read to list the metadata fields a search can filter on


class FeedbackRequest(BaseModel):
    completion_id: str = Field(min_length=1, max_length=200)
    rating: Literal["up", "down"] | None = None
    correction: str | None = None
    comment: str | None = None


class PromptRequest(BaseModel):
    question: str = Field(min_length=1)
    template: str | None = None  # a built-in name
    template_source: str | None = None  # an edited template, compiled in the sandbox


class Playground:
    """What the routes share: the pipeline, the feedback store, recent answers, approved examples."""

    def __init__(self, rag: Any, store: FeedbackStore | None, completions: RecentCompletions, *,
                 feedback_examples: bool = True) -> None:
        self.rag, self.store, self.completions = rag, store, completions
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self._own_examples = rag.builder.examples
        self.feedback_examples = feedback_examples and store is not None
        if self.feedback_examples:
            self.refresh_examples()

    @property
    def index(self) -> Any:
        return self.rag.index

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def refresh_examples(self) -> None:
        """Give the pipeline a builder whose examples are its own plus the approved answers.

        A new builder replaces the old one, so a prompt being built keeps the examples it started with.
        """
        if not self.feedback_examples:
            return
        approved = [as_example(f) for f in self.store.approved()]  # type: ignore[union-attr]
        chosen = [*(self._own_examples or []), *approved]
        builder = copy.copy(self.rag.builder)
        builder.examples = ExampleSet(chosen, source="feedback", embedder=self.index.embedder,
                                      analyzer=self.index.analyzer) if chosen else None
        self.rag.builder = builder

    def answer(self, completion_id: str, request: Any) -> Any:
        """The remembered answer, if it was given to this caller (another principal's is not seen)."""
        record = self.completions.get(completion_id)
        if record is None or (record.principal or None) != principal_of(request.scope):
            return None
        return record

    def with_cited_metadata(self, record: Any, correction: str | None) -> Any:
        """``record`` with what the documents its approved text cites share in their metadata (one search
        restricted to those documents)."""
        cited = record.cited_doc_ids(correction or record.answer)
        if not cited:
            return record
        try:
            hits = self.index.search(record.query, 10 * len(cited), filters={"doc_id": {"in": cited}})
        except RagkitError as exc:  # the rating matters more than its tags: stored untagged (no scope admits it)
            logger.warning("cited documents' metadata not found for feedback: %s", exc)
            return record
        by_doc: dict[str, Any] = {}
        for hit in hits:
            by_doc.setdefault(hit.doc_id, {**hit.metadata, "doc_id": hit.doc_id})
        if set(by_doc) != set(cited):  # a cited document is gone: nothing can be said to be in common
            return record
        return dataclasses.replace(record, cited_metadata=common_metadata([by_doc[d] for d in cited]))

    def fields(self, request: Any) -> list[dict[str, Any]]:
        """The filterable fields and values of the documents the caller may see (another tenant's
        sources or team names would otherwise show in the suggestions)."""
        docs: list[Document] = []
        batch: list[Document] = []
        for doc_id, _, meta in self.index.backend.iter_documents():
            batch.append(Document(doc_id, "", meta))
            if len(batch) == 256:
                docs += self._seen(request, batch)
                batch = []
            if len(docs) >= MAX_FIELD_DOCUMENTS:
                break
        docs += self._seen(request, batch)
        return views.filter_fields(docs[:MAX_FIELD_DOCUMENTS])

    @staticmethod
    def _seen(request: Any, docs: list[Document]) -> list[Document]:
        records = [{**d.metadata, "doc_id": d.id} for d in docs]
        return [d for d, ok in zip(docs, in_scope(request, records)) if ok]

    def document(self, doc_id: str) -> Any:
        for found, text, meta in self.index.backend.iter_documents():
            if found == doc_id:
                return Document(found, text, meta)
        return None

    def search(self, request: Any, params: Any, prefix: str = "") -> tuple[list[Any], dict[str, Any]]:
        """Hits for the query in ``params`` with the settings named ``prefix + name``, in the caller's scope."""
        query = (params.get("q") or "").strip()
        settings: dict[str, Any] = {"k": _int(params.get(prefix + "k"), self.rag.k, "k"),
                                    "mode": _choice(params.get(prefix + "mode") or self.rag.mode, SEARCH_MODES, "mode")}
        method = params.get(prefix + "method")
        if method:
            settings["method"] = _choice(method, FUSION_METHODS, "method")
        associations = params.get(prefix + "associations")
        if associations in ("on", "off"):
            settings["associations"] = associations == "on"
        asked = views.parse_filters({k.removeprefix(prefix): v for k, v in params.items()})
        filters = narrowed(request, narrow(self.rag.filters, asked))  # the server's filter, the form's, the scope
        if not query:
            return [], settings
        hits = self.rag.retrieve(query, filters=filters, **settings)
        return hits, {**settings, "filters": asked}

    def builder_for(self, request: PromptRequest, http: Any) -> PromptBuilder:
        """The server's builder, or one like it with another template (a built-in or edited source),
        with only the examples the caller's scope admits."""
        base = self.rag.builder
        if base.examples is not None:
            admitted = in_scope(http, [dict(e.metadata) for e in base.examples])
            if not all(admitted):
                kept = [e for e, ok in zip(base.examples, admitted) if ok]
                base = copy.copy(base)
                base.examples = ExampleSet(kept, source=base.examples.source, embedder=self.index.embedder,
                                           analyzer=self.index.analyzer) if kept else None
        if not request.template_source and not request.template:
            return base
        source = request.template_source
        template: str = source if source else _choice(request.template, builtin_names(), "template")
        if source and "\n" not in source:
            template = source + "\n"  # always compiled as a template string, never opened as a path
        budget = base.budget
        shows_examples = load_template(template).uses("examples")  # else the builder refuses the examples
        return PromptBuilder(template, examples=base.examples if shows_examples else None, example_strategy=base.example_strategy,
                             num_examples=base.num_examples, max_tokens=budget.max_tokens,
                             reserve_tokens=budget.reserve_tokens, token_counter=base.count,
                             min_score=base.min_score, overflow=base.overflow, system=base.system,
                             min_passages=budget.min_passages, max_passage_tokens=budget.max_passage_tokens,
                             max_example_tokens=budget.max_example_tokens,
                             max_history_tokens=budget.max_history_tokens)


def router(playground: Playground) -> APIRouter:
    """The ``/ui/`` views and ``POST /v1/feedback`` over ``playground``."""
    api = APIRouter()
    pg = playground

    @api.get("/ui/views", include_in_schema=False)
    async def all_views(request: Request) -> HTMLResponse:
        fields = await asyncio.to_thread(pg.fields, request)
        return pg.render("views.html", fields=fields, modes=SEARCH_MODES, methods=FUSION_METHODS,
                         templates=builtin_names(), has_model=pg.rag.generator is not None, k=pg.rag.k,
                         template=pg.rag.builder.template.name, feedback=pg.store is not None)

    @api.get("/ui/template", include_in_schema=False)
    async def template_source(name: str) -> JSONResponse:
        _choice(name, builtin_names(), "template")
        text = (builtin_dir() / f"{name}.jinja").read_text(encoding="utf-8")
        return JSONResponse({"name": name, "source": text}, headers=SECURITY_HEADERS)

    @api.get("/ui/search", include_in_schema=False)
    async def search(request: Request) -> HTMLResponse:
        params = dict(request.query_params)
        try:
            hits, used = await asyncio.to_thread(pg.search, request, params)
        except ConfigError as exc:
            return pg.render("error.html", 400, message=str(exc))
        rows = views.search_rows(hits, params.get("q", ""), pg.index.analyzer)
        return pg.render("results.html", rows=rows, settings=used, query=params.get("q", ""))

    @api.get("/ui/compare", include_in_schema=False)
    async def compare(request: Request) -> HTMLResponse:
        params = dict(request.query_params)
        try:
            sides = [await asyncio.to_thread(pg.search, request, params, side + ".") for side in ("a", "b")]
        except ConfigError as exc:
            return pg.render("error.html", 400, message=str(exc))
        query = params.get("q", "")
        columns = [{"rows": views.search_rows(h, query, pg.index.analyzer), "settings": s} for h, s in sides]
        ranks = [{r["hit"].chunk_id: r["hit"].rank for r in c["rows"]} for c in columns]
        return pg.render("compare.html", columns=columns, ranks=ranks, query=query)

    @api.get("/ui/passage", include_in_schema=False)
    async def passage(doc_id: str, chunk_id: str, request: Request) -> HTMLResponse:
        document = await asyncio.to_thread(pg.document, doc_id)
        if document is not None and not in_scope(request, [dict(document.metadata)])[0]:
            document = None  # outside the caller's scope: as if it did not exist
        chunks = await asyncio.to_thread(pg.index.chunker.split, document) if document is not None else []
        found = views.passage_in_document(document, chunks, chunk_id)
        return pg.render("passage.html", 200 if document is not None else 404, passage=found)

    @api.post("/ui/prompt", include_in_schema=False)
    async def prompt(request: PromptRequest, http: Request) -> HTMLResponse:
        try:
            builder = pg.builder_for(request, http)
            hits = await asyncio.to_thread(pg.rag.retrieve, request.question, filters=narrowed(http, pg.rag.filters))
            built = await asyncio.to_thread(builder.build, request.question, hits)
        except RagkitError as exc:  # a template error (sandboxed), an unknown name, no room
            return pg.render("error.html", 400, message=f"{type(exc).__name__}: {exc}")
        return pg.render("prompt.html", **views.prompt_parts(built, builder, request.question),
                         template=builder.template.name)

    @api.get("/ui/completion/{completion_id}", include_in_schema=False)
    async def completion(completion_id: str, request: Request) -> HTMLResponse:
        record = pg.answer(completion_id, request)
        if record is None:
            return pg.render("error.html", 404, message=f"no answer {completion_id} in this server's memory")
        return pg.render("completion.html", record=record, cited=set(record.cited_doc_ids()),
                         not_in_context=bool(_NOT_IN_CONTEXT.search(record.answer)) or not record.context_sufficient,
                         feedback=pg.store is not None)

    @api.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, request: Request) -> JSONResponse:
        if pg.store is None:
            return _error(503, "this server keeps no feedback (the index is not a local folder)", "no_feedback")
        record = pg.answer(body.completion_id, request)
        if record is None:
            return _error(404, f"no chat completion {body.completion_id!r} in this server's memory: feedback is "
                          f"taken on the last {pg.completions.size} answers since the server started", "unknown_completion")
        try:
            record = await asyncio.to_thread(pg.with_cited_metadata, record, body.correction)
            stored = await asyncio.to_thread(pg.store.add, record, rating=body.rating, correction=body.correction,
                                             comment=body.comment, principal=principal_of(request.scope))
        except ConfigError as exc:
            return _error(400, str(exc), "invalid_value")
        await asyncio.to_thread(pg.refresh_examples)
        return JSONResponse({"object": "feedback", "id": stored.id, "completion_id": stored.completion_id,
                             "rating": stored.rating, "approved": stored.approved})

    return api


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}},
                        status_code=status)


def _choice(value: Any, valid: Any, name: str) -> Any:
    if value in (None, ""):
        return valid[0]
    if value not in valid:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, valid))}, got {value!r}")
    return value


def _int(value: Any, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not 1 <= number <= 100:
        raise ConfigError(f"{name} must be between 1 and 100, got {number}")
    return number
