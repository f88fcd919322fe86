"""The Haystack adapter as a component of a real ``Pipeline`` (sync and async)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("haystack", reason='needs pip install "ragkit[haystack]"')

from haystack import Document, Pipeline, component

from ragkit.errors import FilterError
from ragkit.integrations.haystack import RagkitRetriever

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "docs"
QUERY = "how much honey to leave for winter"


@pytest.fixture
def index(fake_index: Any) -> Any:
    fake_index.sync(SAMPLES)
    return fake_index


@component
class Sources:
    """A downstream stand-in: what a prompt builder would receive."""

    @component.output_types(sources=list[str])
    def run(self, documents: list[Document]) -> dict[str, list[str]]:
        return {"sources": [d.meta["chunk_id"] for d in documents]}


def pipeline(index: Any, **options: Any) -> Any:
    pipe = Pipeline()
    pipe.add_component("retriever", RagkitRetriever(index, **options))
    pipe.add_component("sources", Sources())
    pipe.connect("retriever.documents", "sources.documents")
    return pipe


def test_pipeline_returns_ragkit_hits_in_order(index: Any) -> None:
    hits = index.search(QUERY, 4)
    out = pipeline(index, k=4).run({"retriever": {"query": QUERY}}, include_outputs_from={"retriever"})
    docs = out["retriever"]["documents"]
    assert out["sources"]["sources"] == [h.chunk_id for h in hits]
    assert [d.content for d in docs] == [h.text for h in hits]
    assert [d.score for d in docs] == [h.score for h in hits]
    assert docs[0].meta["bm25_rank"] == hits[0].bm25_rank and docs[0].meta["dense_score"] == hits[0].dense_score


def test_run_async_and_run_options(index: Any) -> None:
    expected = [h.chunk_id for h in index.search(QUERY, 2, filters={"source": {"glob": "harvest/*"}})]
    out = asyncio.run(pipeline(index, k=5).run_async(
        {"retriever": {"query": QUERY, "top_k": 2, "filters": {"source": {"glob": "harvest/*"}}}}))
    assert out["sources"]["sources"] == expected


def test_bad_filter_is_ragkits_error(index: Any) -> None:
    with pytest.raises(Exception) as info:
        pipeline(index).run({"retriever": {"query": QUERY, "filters": {"nope": 1}}})
    chain = [info.value, info.value.__cause__]
    assert any(isinstance(e, FilterError) for e in chain), chain
