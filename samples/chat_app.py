"""A small terminal chat over an index: ragkit retrieves, an OpenAI-compatible model answers.

    python samples/index_folder.py                  # build samples/kb.ragkit first
    python samples/chat_app.py --upstream http://localhost:8080/v1 --model qwen2.5-7b-instruct

Any server with ``/v1/chat/completions`` works: llama.cpp's server, vLLM, Ollama (``/v1``),
LM Studio, OpenAI. Follow-ups ("and what about the second one?") are searched with the
earlier turns in mind. Without ``--upstream`` it shows the passages a model would be given.
Commands: ``/reset`` forgets the conversation, ``/quit`` (or Ctrl-D) leaves.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import ragkit
from ragkit.pipeline.rag import RAG

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(HERE / "kb.ragkit"), help="index (default samples/kb.ragkit)")
    parser.add_argument("--upstream", help="OpenAI-compatible API root, e.g. http://localhost:8080/v1")
    parser.add_argument("--model", default="default", help="model name on the upstream server")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="variable holding the API key")
    parser.add_argument("-k", type=int, default=4, help="passages per question (default 4)")
    parser.add_argument("--template", default="chat", help="prompt template (default chat)")
    args = parser.parse_args(argv)

    if not (Path(args.index) / "ragkit.sqlite").exists():
        print(f"No index at {args.index}. Build one with: python samples/index_folder.py", file=sys.stderr)
        return 1
    generator = None
    if args.upstream:
        key = os.environ.get(args.api_key_env)
        generator = ragkit.OpenAICompatible(args.upstream, model=args.model, api_key=key)
    else:
        print("No --upstream given, so there is no model to answer: showing the passages one would get.\n"
              "Connect one with --upstream URL --model NAME (llama.cpp, vLLM, Ollama's /v1, OpenAI...).\n")
    index = ragkit.Index(args.index, create=False)
    rag = RAG(index, ragkit.PromptBuilder(args.template), generator, k=args.k)
    chat(rag)
    return 0


def chat(rag: RAG) -> None:
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if line in ("/quit", "/exit"):
            return
        if line == "/reset":
            history.clear()
            continue
        if not line:
            continue
        messages = [*history, {"role": "user", "content": line}]
        reply = answer(rag, messages) if rag.generator is not None else show_passages(rag, messages)
        if reply is not None:
            history = [*messages, {"role": "assistant", "content": reply}]


def answer(rag: RAG, messages: list[dict[str, str]]) -> str | None:
    """Stream the model's reply, then list the sources it cited."""
    streamed = rag.chat_stream(messages)
    try:
        print("bot> ", end="", flush=True)
        for piece in streamed:
            print(piece, end="", flush=True)
        print()
    except ragkit.GeneratorError as exc:
        print(f"\n(the model failed: {exc})", file=sys.stderr)
        return None
    result = streamed.answer
    for c in result.citations:
        print(f"     {c.label} {c.source or c.doc_id}" + (f", page {c.page}" if c.page else ""))
    return result.text


def show_passages(rag: RAG, messages: list[dict[str, str]]) -> str:
    retrieved = rag.prepare_chat(messages)
    print(f"     searched: {retrieved.query!r}")
    for marker, c in retrieved.prompt.citations.items():
        print(f"     [{marker}] {c.source or c.doc_id}: {c.snippet}")
    return ""  # keeps the question in the history, so follow-ups still find their topic


if __name__ == "__main__":
    sys.exit(main())
