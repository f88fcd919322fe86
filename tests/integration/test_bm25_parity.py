"""One BM25: the local backend and Milvus Lite score the same corpus alike, for both IDF variants, and
the okapi variant is ``rank_bm25.BM25Okapi``.

Both backends score with ``ragkit.storage.bm25``'s functions; Milvus recovers each chunk's tf from its
stored sparse weight and takes okapi's mean IDF from its statistics collection. The corpus has terms
in more than half the documents, where okapi's IDF is negative and floored to ``epsilon * mean(idf)``
(the case the two backends once disagreed on by 0.27).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

import ragkit
from ragkit.storage.bm25 import BM25Index, BM25Params
from ragkit.types import Document

try:
    import milvus_lite  # noqa: F401
    import pymilvus  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip('the Milvus backend needs pymilvus and milvus-lite: pip install "ragkit[milvus]"',
                allow_module_level=True)

CORPUS = [  # "varroa" and "mites" are in more than half of the documents: okapi gives them IDF < 0
    Document("a", "Varroa mites weaken the colony; count varroa mites every week in spring."),
    Document("b", "Varroa treatment with oxalic acid in winter, when the colony has no brood."),
    Document("c", "Mites and varroa: the drone brood trap removes mites without any acid."),
    Document("d", "Swarming in May: the colony raises new queens and half the bees leave."),
    Document("e", "Varroa mites spread between colonies by drifting bees and robbing."),
    Document("f", "Honey is extracted from capped frames; varroa mites are not a concern here, the mites."),
    Document("g", "Clover and heather give honey of different colours and tastes."),
]
QUERIES = ["varroa mites", "colony acid", "honey", "varroa varroa treatment", "queens swarming bees", "absent word"]


class TinyEmbedder:
    """A deterministic stand-in for a model: hashed words, L2-normalised (no download, no model)."""

    name = "tests/tiny-hashing-embedder"
    dimension = 16

    @property
    def max_seq_length(self) -> int:
        return 512

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "big") % self.dimension] += 1.0
            out[row, 0] += 1e-3  # no zero vector for an empty text
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def token_counter(self) -> Callable[[str], int]:
        return lambda text: len(text.split())


def bm25_scores(location: str | Path, idf: str) -> dict[str, dict[str, float]]:
    """``query -> {chunk_id: bm25 score}`` of an index over CORPUS built with ``bm25_idf=idf``."""
    with ragkit.Index(location, embedder=TinyEmbedder(), bm25_idf=idf, show_progress=False) as index:
        index.add(CORPUS)
        return {q: {h.chunk_id: h.bm25_score for h in index.search(q, mode="bm25", k=len(CORPUS))} for q in QUERIES}


@pytest.mark.parametrize("idf", ["okapi", "lucene"])
def test_local_and_milvus_lite_give_the_same_bm25_scores(tmp_path: Path, idf: str) -> None:
    local = bm25_scores(tmp_path / "local.ragkit", idf)
    milvus = bm25_scores(f"milvus-lite://{tmp_path / 'kb.db'}", idf)
    assert any(local[q] for q in QUERIES)
    for query in QUERIES:
        assert milvus[query].keys() == local[query].keys(), query
        for chunk_id, score in local[query].items():
            assert milvus[query][chunk_id] == pytest.approx(score, rel=1e-9, abs=1e-9), (idf, query, chunk_id)
    if idf == "okapi":  # the floor is reached: a document matching only "varroa mites" scores > 0
        assert local["varroa mites"]["e#0"] > 0


def test_the_okapi_variant_is_rank_bm25() -> None:
    rank_bm25 = pytest.importorskip("rank_bm25")
    tokens = [d.text.lower().replace(";", " ").replace(":", " ").replace(",", " ").replace(".", " ").split()
              for d in CORPUS]
    ours = BM25Index.build(tokens, BM25Params(idf="okapi"))
    theirs = rank_bm25.BM25Okapi(tokens)  # k1=1.5, b=0.75, epsilon=0.25: BM25Params's defaults
    assert sum("varroa" in t for t in tokens) > len(tokens) / 2  # a negative raw IDF, floored by both
    for query in QUERIES:
        q = query.split()
        np.testing.assert_allclose(ours.scores(q), theirs.get_scores(q), rtol=1e-12, atol=1e-12)
