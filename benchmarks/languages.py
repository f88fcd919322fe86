"""BM25 alone on non-English text: ragkit's analyzers (english, the language's own, ``auto``) against bm25s.

    pip install bm25s; python benchmarks/languages.py [--tutors /usr/share/vim/vim90/tutor]

Documents: the paragraphs of Vim's tutor in each language (real text, installed with vim). Known-item
queries: each paragraph's longest line, removed from it; the paragraph is the one relevant document.
Every system gets the same documents and queries and the same BM25 constants (k1 1.5, b 0.75, Lucene
IDF); bm25s tokenizes its own way (English stopwords, no stemmer). Prints MRR@10 per language.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from ragkit.storage.bm25 import BM25Index
from ragkit.text.analysis import Analyzer

TUTORS = {"russian": "tutor.ru.utf-8", "greek": "tutor.el.utf-8", "chinese": "tutor.zh_cn.utf-8",
          "german": "tutor.de.utf-8", "english": "tutor"}
OWN_STEMMER = ("russian", "greek", "german")


def known_items(path: Path) -> tuple[list[str], list[str]]:
    """Paragraphs without their longest line, and those lines as queries."""
    docs, queries = [], []
    for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        lines = [line.strip() for line in para.split("\n") if len(line.strip()) > 15]
        if len(lines) < 3:
            continue
        query = max(lines, key=len)
        docs.append("\n".join(line for line in para.split("\n") if line.strip() != query))
        queries.append(query)
    return docs, queries


def mrr(rankings: list[list[int]]) -> float:
    return float(np.mean([next((1 / (r + 1) for r, d in enumerate(ranked[:10]) if d == i), 0.0)
                          for i, ranked in enumerate(rankings)]))


def ragkit_rankings(docs: list[str], queries: list[str], analyzer: Analyzer) -> list[list[int]]:
    index = BM25Index.build(analyzer.tokenize_many(docs))
    return [list(np.argsort(-index.scores(analyzer.tokenize(q)), kind="stable")[:10]) for q in queries]


def bm25s_rankings(docs: list[str], queries: list[str]) -> list[list[int]]:
    import bm25s

    model = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    model.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
    found, _ = model.retrieve(bm25s.tokenize(queries, stopwords="en", show_progress=False), k=10,
                              show_progress=False)
    return [list(row) for row in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tutors", type=Path, default=Path("/usr/share/vim/vim90/tutor"))
    args = parser.parse_args()
    print("| language | paragraphs | ragkit english | ragkit own stemmer | ragkit auto | bm25s |")
    print("|---|---|---|---|---|---|")
    for language, name in TUTORS.items():
        docs, queries = known_items(args.tutors / name)
        own = (f"{mrr(ragkit_rankings(docs, queries, Analyzer(language=language, stopwords=False))):.3f}"
               if language in OWN_STEMMER else "-")
        print(f"| {language} | {len(docs)} | {mrr(ragkit_rankings(docs, queries, Analyzer())):.3f} | {own} | "
              f"{mrr(ragkit_rankings(docs, queries, Analyzer(language='auto'))):.3f} | "
              f"{mrr(bm25s_rankings(docs, queries)):.3f} |")


if __name__ == "__main__":
    main()
