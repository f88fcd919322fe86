"""The bulk path: an add's chunks reach the embedder sorted by length across the whole add (less padding
per batch), and each vector still lands on its own chunk."""

from __future__ import annotations

import random
from pathlib import Path

from fakes import FakeEmbedder, embed, open_fake_index

from ragkit import Document
from ragkit.index import embedding_text


def mixed_documents(n: int) -> list[Document]:
    rng = random.Random(7)
    words = ["bees", "wax", "hive", "honey", "swarm", "queen", "drone", "comb", "pollen", "nectar"]
    return [Document(id=f"d{i}", text=" ".join(rng.choice(words) for _ in range(rng.randint(1, 60))) + f" n{i}")
            for i in range(n)]


def test_an_add_is_embedded_longest_first_across_documents_in_few_calls(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    documents = mixed_documents(90)
    with open_fake_index(tmp_path / "kb.ragkit", fake) as index:
        index.add(documents)
        chunks = [c for d in documents for c in index.chunker.split(d)]
    lengths = [len(t) for t in fake.encoded[: len(chunks)]]
    assert lengths == sorted(lengths, reverse=True)  # one order for the add
    # batches of 32, not one call per document; then one call embeds the dense leg's self-test probes
    assert fake.calls == -(-len(chunks) // 32) + 1
    assert len(fake.encoded) - len(chunks) == (index.config.dense_competence or {})["probes"]


def test_each_chunk_keeps_its_own_vector(tmp_path: Path) -> None:
    documents = mixed_documents(70)
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.add(documents)
        for doc in documents[::7]:
            (chunk,) = index.chunker.split(doc)[:1]
            hits = index.search(doc.text, k=1, mode="dense", query_vector=embed(embedding_text(chunk)))
            assert hits[0].doc_id == doc.id
            assert hits[0].score > 0.999  # the stored vector is this chunk's own
