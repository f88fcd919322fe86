"""The sample index as a retriever in LangChain, LlamaIndex and Haystack (whichever are installed).

    pip install ".[langchain]" ".[llamaindex]" ".[haystack]"     # any of them
    python samples/index_folder.py                               # builds samples/kb.ragkit once
    python samples/frameworks.py ["your question"]

No model is called: each framework's pipeline runs with a stand-in, to show what reaches it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import ragkit

HERE = Path(__file__).parent
question = sys.argv[1] if len(sys.argv) > 1 else "When should I treat my hives for varroa mites?"
index = ragkit.Index(os.environ.get("RAGKIT_INDEX", HERE / "kb.ragkit"), create=False)
health = {"source": {"glob": "health/*"}}  # ragkit's own filter syntax, in every framework


def langchain() -> None:
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    from ragkit.integrations.langchain import RagkitRetriever

    retriever = RagkitRetriever(index, k=3, filters=health)
    context = retriever | (lambda docs: "\n".join(f"- {d.metadata['source']} ({d.metadata['score']:.3f})"
                                                  for d in docs))
    chain = {"context": context, "question": RunnablePassthrough()} | RunnableLambda(
        lambda x: f"would ask a model about {x['question']!r} given:\n{x['context']}")
    print(chain.invoke(question))


def llamaindex() -> None:
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    from ragkit.integrations.llamaindex import RagkitRetriever

    engine = RetrieverQueryEngine.from_args(RagkitRetriever(index, k=3, filters=health), llm=MockLLM())
    for node in engine.query(question).source_nodes:
        print(f"- {node.node.metadata['source']} ({node.score:.3f})")


def haystack() -> None:
    from haystack import Pipeline

    from ragkit.integrations.haystack import RagkitRetriever

    pipe = Pipeline()
    pipe.add_component("retriever", RagkitRetriever(index, k=3))
    for doc in pipe.run({"retriever": {"query": question, "filters": health}})["retriever"]["documents"]:
        print(f"- {doc.meta['source']} ({doc.score:.3f}, bm25 #{doc.meta['bm25_rank']}, dense #{doc.meta['dense_rank']})")


for name, package, run in (("LangChain", "langchain_core", langchain), ("LlamaIndex", "llama_index", llamaindex),
                           ("Haystack", "haystack", haystack)):
    print(f"\n== {name}")
    if importlib.util.find_spec(package) is None:
        print(f'  not installed: pip install "ragkit[{name.lower()}]"')
        continue
    run()
