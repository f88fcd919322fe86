"""Index the sample beekeeping documents, then search them and show what a model would be given.

    python samples/index_folder.py ["your question"]

Run it twice: the second sync finds nothing changed and takes milliseconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ragkit

HERE = Path(__file__).parent
question = sys.argv[1] if len(sys.argv) > 1 else "When should I treat my hives for varroa mites?"

index = ragkit.Index(HERE / "kb.ragkit", show_progress=True)
report = index.sync(HERE / "docs")
print(f"sync: {report.summary()}")
for failure in report.failed:
    print(f"  could not index {failure.path}: {failure.reason}")

hits = index.search(question, k=4)
print(f"\nQ: {question}")
for hit in hits:
    legs = f"bm25 #{hit.bm25_rank}" if hit.bm25_rank else "bm25 -"
    legs += f", dense #{hit.dense_rank}" if hit.dense_rank else ", dense -"
    print(f"  {hit.rank}. {hit.score:.3f} ({legs})  {hit.source}  {' > '.join(hit.metadata.get('headings', []))}")

builder = ragkit.PromptBuilder("qa", examples=ragkit.ExampleSet.from_jsonl(HERE / "examples.jsonl"),
                               num_examples=2, max_tokens=2048)
prompt = builder.build(question, hits)
print(f"\n--- prompt ({prompt.token_count} tokens, {len(prompt.citations)} sources) ---\n{prompt.text}")
