"""BM25 alone on non-English text: ragkit against bm25s and rank-bm25 on the same documents.

    pip install bm25s rank-bm25   # for this benchmark only: not ragkit dependencies
    python benchmarks/languages.py --sets /tmp/langsets [--only ar-sections]
    python benchmarks/languages.py --tutors /usr/share/vim/vim90/tutor

``--sets DIR``: every BEIR folder under DIR (``benchmarks/language_sets.py`` builds them from translated
documentation and Arabic papers). Prints nDCG@10 at document level (a document found through several
chunks counts once, as ``benchmarks/scifact.py`` does), each document indexed as title + text:

- *ragkit*: ``ragkit.Index(...).add(documents)`` and ``search(mode="bm25")``, the public API with the
  defaults of a new index; chunks are sized by all-MiniLM-L6-v2's own tokenizer (the index's embedder is a
  stand-in that counts tokens with it and makes no real vectors: BM25 never reads them).
- *ragkit, whole documents*: ragkit's analyzer and BM25 on unchunked documents (what chunking costs).
- *bm25s*: ``bm25s.tokenize(stopwords="en", stemmer=english)`` (its README's recipe) and ``BM25()``.
- *rank-bm25*: ``BM25Okapi`` on the same tokens as bm25s.

Every system uses k1 1.5, b 0.75; bm25s Lucene's IDF, rank-bm25 its own.
``--tutors``: the older known-item check on Vim's tutor paragraphs (MRR@10; see ragkit/text/language.py).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ragkit.evaluation.datasets import EvalDataset, load_beir
from ragkit.evaluation.metrics import doc_ranking_from_hits, evaluate
from ragkit.storage.bm25 import BM25Index
from ragkit.text.analysis import Analyzer

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
Ranker = Callable[[EvalDataset], dict[str, list[str]]]


class TokenizerOnly:
    """A stand-in embedder with the real model's tokenizer and window, and hashed unit vectors."""

    def __init__(self, model: str = MODEL) -> None:
        from ragkit.text.embedding import load_tokenizer

        self.name, self.max_seq_length, self.dimension = model, 256, 16
        self._tokenizer = load_tokenizer(model)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        seeds = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=4).digest(), "little") for t in texts]
        vectors = np.stack([np.random.default_rng(s).normal(size=16) for s in seeds]) if texts else np.zeros((0, 16))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    def token_counter(self) -> Callable[[str], int]:
        return lambda text: len(self._tokenizer.encode(text, add_special_tokens=False))


def ragkit_index(dataset: EvalDataset, **options: object) -> dict[str, list[str]]:
    import ragkit

    with tempfile.TemporaryDirectory() as tmp, ragkit.Index(
        Path(tmp) / "x.ragkit", embedder=TokenizerOnly(), show_progress=False, **options
    ) as index:
        index.add(dataset.corpus.values())
        chunks = len(index)
        run = {qid: doc_ranking_from_hits(index.search(q, k=100, mode="bm25")) for qid, q in dataset.queries.items()}
    print(f"    ragkit index: {chunks} chunks for {len(dataset.corpus)} documents")
    return run


def ragkit_whole(dataset: EvalDataset, analyzer: Analyzer | None = None) -> dict[str, list[str]]:
    analyzer = analyzer or Analyzer(language="auto")
    ids = list(dataset.corpus)
    index = BM25Index.build(analyzer.tokenize_many([d.text for d in dataset.corpus.values()]))
    return {qid: [ids[i] for i in np.argsort(-index.scores(analyzer.tokenize(q)), kind="stable")[:100]]
            for qid, q in dataset.queries.items()}


def _bm25s_tokens(texts: list[str]) -> list[list[str]]:
    import bm25s
    import Stemmer

    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False,
                            return_ids=False)
    return [list(t) for t in tokens]


def bm25s_run(dataset: EvalDataset) -> dict[str, list[str]]:
    import bm25s

    ids = list(dataset.corpus)
    model = bm25s.BM25(k1=1.5, b=0.75)
    model.index(_bm25s_tokens([d.text for d in dataset.corpus.values()]), show_progress=False)
    queries = [q or ["_"] for q in _bm25s_tokens(list(dataset.queries.values()))]
    found, _ = model.retrieve(queries, k=min(100, len(ids)), show_progress=False)
    return {qid: [ids[i] for i in row] for qid, row in zip(dataset.queries, found)}


def rank_bm25_run(dataset: EvalDataset) -> dict[str, list[str]]:
    from rank_bm25 import BM25Okapi

    ids = list(dataset.corpus)
    okapi = BM25Okapi([t or ["_"] for t in _bm25s_tokens([d.text for d in dataset.corpus.values()])])
    queries = _bm25s_tokens(list(dataset.queries.values()))
    return {qid: [ids[i] for i in np.argsort(-okapi.get_scores(q), kind="stable")[:100]]
            for qid, q in zip(dataset.queries, queries)}


SYSTEMS: dict[str, Ranker] = {
    "ragkit": ragkit_index,
    "ragkit whole docs": ragkit_whole,
    "bm25s": bm25s_run,
    "rank-bm25": rank_bm25_run,
}


def compare_sets(root: Path, only: Sequence[str], systems: Sequence[str]) -> None:
    print("| collection | documents | " + " | ".join(systems) + " |")
    print("|---|---|" + "---|" * len(systems))
    for folder in sorted(p for p in root.iterdir() if (p / "corpus.jsonl").is_file()):
        if only and folder.name not in only:
            continue
        dataset = load_beir(folder, "test")
        cells = [f"{evaluate(SYSTEMS[s](dataset), dataset.qrels, ['ndcg@10'])['ndcg@10']:.3f}" for s in systems]
        print(f"| {folder.name} | {len(dataset.corpus)} | " + " | ".join(cells) + " |", flush=True)


# -- the Vim tutor check (known-item queries, MRR@10) ------------------------------------------------

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


def compare_tutors(tutors: Path) -> None:
    print("| language | paragraphs | ragkit english | ragkit own stemmer | ragkit auto | bm25s |")
    print("|---|---|---|---|---|---|")
    for language, name in TUTORS.items():
        docs, queries = known_items(tutors / name)
        own = (f"{mrr(ragkit_rankings(docs, queries, Analyzer(language=language, stopwords=False))):.3f}"
               if language in OWN_STEMMER else "-")
        print(f"| {language} | {len(docs)} | {mrr(ragkit_rankings(docs, queries, Analyzer())):.3f} | {own} | "
              f"{mrr(ragkit_rankings(docs, queries, Analyzer(language='auto'))):.3f} | "
              f"{mrr(bm25s_rankings(docs, queries)):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=Path, help="a folder of BEIR folders (benchmarks/language_sets.py)")
    parser.add_argument("--only", action="append", default=[], help="only this collection (repeatable)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {list(SYSTEMS)}")
    parser.add_argument("--tutors", type=Path, help="Vim's tutor folder, e.g. /usr/share/vim/vim90/tutor")
    args = parser.parse_args()
    if not args.sets and not args.tutors:
        parser.error("give --sets DIR and/or --tutors DIR")
    if args.sets:
        compare_sets(args.sets, args.only, [s.strip() for s in args.systems.split(",")])
    if args.tutors:
        compare_tutors(args.tutors)


if __name__ == "__main__":
    main()
