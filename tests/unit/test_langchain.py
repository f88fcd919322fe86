"""The LangChain adapter in a real LCEL chain, on a fake-embedder index of ``samples/docs``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core", reason='needs pip install "ragkit[langchain]"')

from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from ragkit.errors import ConfigError, FilterError
from ragkit.integrations.langchain import RagkitRetriever

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "docs"
QUERY = "how do I treat varroa mites"


@pytest.fixture
def index(fake_index: Any) -> Any:
    fake_index.sync(SAMPLES)
    return fake_index


def test_documents_carry_ragkit_order_scores_and_evidence(index: Any) -> None:
    hits = index.search(QUERY, 4)
    docs = RagkitRetriever(index, k=4).invoke(QUERY)
    assert [d.metadata["chunk_id"] for d in docs] == [h.chunk_id for h in hits]
    assert [d.page_content for d in docs] == [h.text for h in hits]
    first, hit = docs[0].metadata, hits[0]
    assert first["score"] == hit.score and first["rank"] == 1 and first["source"] == hit.source
    assert (first["bm25_score"], first["bm25_rank"]) == (hit.bm25_score, hit.bm25_rank)
    assert (first["dense_score"], first["dense_rank"]) == (hit.dense_score, hit.dense_rank)
    assert docs[0].id == hit.chunk_id


def test_in_an_lcel_chain_sync_and_async(index: Any) -> None:
    retriever = RagkitRetriever(index, k=3)
    seen: list[str] = []

    def llm(inputs: dict[str, Any]) -> str:  # a stand-in model: records the context it was given
        seen.append(inputs["context"])
        return f"answer to {inputs['question']}"

    def format_docs(docs: list[Any]) -> str:
        return "\n\n".join(f"[{d.metadata['source']}] {d.page_content}" for d in docs)

    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | RunnableLambda(llm)
    assert chain.invoke(QUERY) == f"answer to {QUERY}"
    expected = format_docs(retriever.invoke(QUERY))
    assert seen == [expected]
    assert asyncio.run(chain.ainvoke(QUERY)) == f"answer to {QUERY}"
    assert seen[1] == expected
    docs = asyncio.run(retriever.ainvoke(QUERY))
    assert [d.metadata["chunk_id"] for d in docs] == [h.chunk_id for h in index.search(QUERY, 3)]


def test_filters_pass_through_in_ragkit_syntax(index: Any) -> None:
    docs = RagkitRetriever(index, k=5, filters={"source": {"glob": "seasons/*"}}).invoke(QUERY)
    assert docs and all(d.metadata["source"].startswith("seasons/") for d in docs)
    assert RagkitRetriever(index, k=2, mode="bm25").invoke(QUERY)[0].metadata["dense_score"] is None
    with pytest.raises(FilterError, match="unknown filter field 'colour'"):
        RagkitRetriever(index, filters={"colour": "red"}).invoke(QUERY)


def test_bad_options_and_paths_fail_clearly(index: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="k must be"):
        RagkitRetriever(index, k=0)
    with pytest.raises(ConfigError, match="no index at"):
        RagkitRetriever(tmp_path / "missing.ragkit")
