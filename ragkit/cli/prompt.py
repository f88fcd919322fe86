"""``ragkit prompt``: print the prompt a question would get, as text or as chat-messages JSON.

    ragkit prompt "How do I count varroa mites?" --index kb.ragkit --template qa -k 4
    ragkit prompt "..." --examples samples/examples.jsonl --max-tokens 2048 --messages | my-llm-client

The prompt goes to stdout; what the token budget left out is noted on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any, name: str) -> None:
    from ragkit.cli.common import index_arg, search_args

    p = sub.add_parser(name, help="print the prompt built for a question from the index")
    p.add_argument("question")
    index_arg(p)
    search_args(p)
    p.add_argument("--template", default="qa", help="qa, chat, summarize, fewshot, a file or a string")
    p.add_argument("--template-dir", help="folder of your own templates (shadows built-ins of the same name)")
    p.add_argument("--examples", metavar="FILE", help="few-shot examples (.jsonl, .json or .csv)")
    p.add_argument("--num-examples", type=int, default=3, help="examples to include (default 3)")
    p.add_argument("--max-tokens", type=int, default=4096, help="the model's context size (default 4096)")
    p.add_argument("--reserve-tokens", type=int,
                   help="tokens kept for the answer (default: a quarter of --max-tokens, at most 512)")
    p.add_argument("--token-counter", help="approximate (default), tiktoken:ENCODING or a tokenizer")
    p.add_argument("--messages", action="store_true", help="print the chat messages as JSON instead of text")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: text, messages, passages, dropped, token_count, context_sufficient")
    p.set_defaults(func=cmd_prompt)


def cmd_prompt(args: argparse.Namespace) -> int:
    from ragkit.cli.common import open_index, search_settings, split_min_score
    from ragkit.pipeline.rag import RAG
    from ragkit.prompting.builder import PromptBuilder

    examples = None
    if args.examples:
        from ragkit.prompting.examples import ExampleSet

        examples = ExampleSet.load(args.examples)
    builder = PromptBuilder(args.template, template_dir=args.template_dir, examples=examples,
                            num_examples=args.num_examples, max_tokens=args.max_tokens,
                            reserve_tokens=args.reserve_tokens, token_counter=args.token_counter,
                            min_score=split_min_score(args.min_score)[0])
    settings = search_settings(args)
    settings.pop("min_score", None)
    cut = split_min_score(args.min_score)[1]  # a number cuts the fused score in the search
    if cut is not None:
        settings["min_score"] = cut
    k, mode, filters = settings.pop("k"), settings.pop("mode"), settings.pop("filters")
    rag = RAG(open_index(args.index), builder, k=k, mode=mode, filters=filters, retriever_settings=settings)
    prompt = rag.prepare(args.question).prompt
    if args.json:
        print(json.dumps(_prompt_json(prompt), indent=2, ensure_ascii=False, default=str))
    elif args.messages:
        print(json.dumps(prompt.messages, indent=2, ensure_ascii=False))
    else:
        print(prompt.text)
    for omission in prompt.dropped:
        print(f"ragkit prompt: left out {omission.kind} {omission.key}: {omission.reason}", file=sys.stderr)
    return 0


def _prompt_json(prompt: Any) -> dict[str, Any]:
    return {
        "text": prompt.text, "messages": prompt.messages, "passages": [h.to_dict() for h in prompt.passages],
        "dropped": [{"kind": o.kind, "key": o.key, "reason": o.reason} for o in prompt.dropped],
        "token_count": prompt.token_count, "context_sufficient": prompt.context_sufficient,
    }
