"""The LlamaIndex adapter in a real ``RetrieverQueryEngine`` with llama_index's MockLLM."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core", reason='needs pip install "ragkit[llamaindex]"')

from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode

from ragkit.errors import FilterError
from ragkit.integrations.llamaindex import RagkitRetriever

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "docs"
QUERY = "when do bees swarm"


@pytest.fixture
def index(fake_index: Any) -> Any:
    fake_index.sync(SAMPLES)
    return fake_index


def test_nodes_with_scores_in_ragkit_order(index: Any) -> None:
    hits = index.search(QUERY, 4)
    nodes = RagkitRetriever(index, k=4).retrieve(QUERY)
    assert [n.node.node_id for n in nodes] == [h.chunk_id for h in hits]
    assert [n.score for n in nodes] == [h.score for h in hits]
    meta = nodes[0].node.metadata
    assert (meta["bm25_rank"], meta["dense_rank"], meta["source"]) == (hits[0].bm25_rank, hits[0].dense_rank,
                                                                       hits[0].source)
    shown = nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert hits[0].source in shown and "bm25_score" not in shown  # evidence kept out of the prompt text


def test_in_a_retriever_query_engine(index: Any) -> None:
    engine = RetrieverQueryEngine.from_args(RagkitRetriever(index, k=3), llm=MockLLM())
    response = engine.query(QUERY)
    expected = [h.chunk_id for h in index.search(QUERY, 3)]
    assert [n.node.node_id for n in response.source_nodes] == expected
    assert isinstance(response.response, str)
    response = asyncio.run(engine.aquery(QUERY))
    assert [n.node.node_id for n in response.source_nodes] == expected


def test_filters_pass_through(index: Any) -> None:
    nodes = RagkitRetriever(index, k=5, filters={"type": "pdf"}).retrieve(QUERY)
    assert nodes and all(n.node.metadata["type"] == "pdf" for n in nodes)
    with pytest.raises(FilterError):
        RagkitRetriever(index, filters={"nope": 1}).retrieve(QUERY)
