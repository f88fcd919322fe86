"""How finely the model's tokenizer cuts text tells fusion whether the model knows the language
(``ragkit.text.tokens.fragmentation``, ``fusion.yielded_weight``); an index records it for its corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakes import open_fake_index
from ragkit import Document
from ragkit.retrieval.fusion import YIELD_WEIGHT, yielded_weight
from ragkit.text.embedding import DEFAULT_MODEL, load_tokenizer
from ragkit.text.tokens import approximate_token_count, fragmentation


def model_fragmentation(text: str) -> float:
    tokenizer = load_tokenizer(DEFAULT_MODEL)  # all-MiniLM-L6-v2's own, from the installed weights package
    return fragmentation(len(tokenizer.encode(text, add_special_tokens=False)), text)  # type: ignore[return-value]


def test_an_english_vocabulary_cuts_arabic_and_russian_finely_and_english_not() -> None:
    assert model_fragmentation("How do I add CORS middleware to my application?") < 0.9
    assert model_fragmentation("Cómo actualizar el estado de un componente") > 0.9
    assert model_fragmentation("Как обновить состояние компонента в ответ на ввод") > 2.0
    assert model_fragmentation("كيفية تحديث حالة المكون استجابة لإدخال المستخدم") > 2.0
    assert fragmentation(3, "") is None and fragmentation(3, 0) is None
    assert fragmentation(10, approximate_token_count("abcd efgh")) == 5.0


@pytest.mark.parametrize(("query", "corpus", "expected"), [
    (None, None, YIELD_WEIGHT),  # no tokenizer of its own: as before
    (0.7, 0.8, YIELD_WEIGHT),  # English: the full yield
    (1.0, 1.0, 0.4),  # a query the model cuts as finely as the estimate: no yield, the base share
    (0.85, 0.8, 0.4 + (YIELD_WEIGHT - 0.4) * 0.5),  # halfway
    (0.7, 0.95, 0.4 + (YIELD_WEIGHT - 0.4) * 0.5),  # an English query over a corpus halfway to Spanish
    (0.7, 1.65, 0.4 * 0.5),  # a corpus the model half reads: no yield, and half the share
    (0.7, 2.5, 0.0),  # a corpus the model cannot read: no dense share at all
])
def test_the_dense_share_follows_what_the_model_knows(query: float | None, corpus: float | None,
                                                      expected: float) -> None:
    got = yielded_weight(0.4, 2, 3.0, query_fragmentation=query, corpus_fragmentation=corpus)
    assert got == pytest.approx(expected)


def test_an_index_counts_its_corpus_and_hands_it_to_the_retriever(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "x.ragkit") as index:  # the fake counts words: English-like, ~0.7
        assert index.learned_state().corpus_fragmentation is None
        index.add([Document("a", "Bees make honey from nectar they gather."), Document("b", "Varroa mites")])
        first = dict(index.config.fragmentation or {})
        index.add([Document("c", "Smoke calms the guard bees.")])
        totals = index.config.fragmentation or {}
        assert totals["model_tokens"] == first["model_tokens"] + 5  # five words
        assert totals["estimated_tokens"] > first["estimated_tokens"]
        ratio = index.learned_state().corpus_fragmentation
        assert ratio == pytest.approx(totals["model_tokens"] / totals["estimated_tokens"]) and 0 < ratio < 1.3
    with open_fake_index(tmp_path / "x.ragkit") as reopened:  # stored with the index
        assert reopened.learned_state().corpus_fragmentation == pytest.approx(ratio)


def test_on_a_corpus_the_model_cannot_read_the_hybrid_ranks_as_bm25(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "x.ragkit") as index:
        index.add([Document(f"d{i}", f"page {i} about bees hives honey wax number {i}") for i in range(6)])
        index._update_config(fragmentation={"model_tokens": 300, "estimated_tokens": 100})  # as Arabic reads
        assert index.learned_state().corpus_fragmentation == 3.0
        for query in ("bees honey 3", "wax number"):
            hybrid = [h.chunk_id for h in index.search(query, k=6)]
            bm25 = [h.chunk_id for h in index.search(query, k=6, mode="bm25")]
            assert hybrid[: len(bm25)] == bm25
        scores = np.array([h.score for h in index.search("bees honey 3", k=6)])
        assert np.all(np.diff(scores) <= 0)


def test_an_index_stored_before_counting_is_not_counted_from_one_add(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "x.ragkit") as index:
        index.add([Document("a", "Bees make honey from nectar they gather.")])
        stored = dict(index.backend.get_config() or {})
        stored.pop("fragmentation")  # as an index built before this stored it
        index.backend.set_config(stored)
    with open_fake_index(tmp_path / "x.ragkit") as old:
        old.add([Document("b", "Пчёлы делают мёд из нектара")])  # one Russian page must not speak for all
        assert old.config.fragmentation is None and old.learned_state().corpus_fragmentation is None


def test_chunks_whose_vectors_come_from_the_cache_are_counted_too(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "x.ragkit") as index:
        index.add([Document("a", "Bees make honey from nectar they gather.")])
        once = dict(index.config.fragmentation or {})
        index.delete(["a"])
        index.add([Document("a", "Bees make honey from nectar they gather.")])  # embeds nothing
        assert (index.config.fragmentation or {})["model_tokens"] == 2 * once["model_tokens"]


def test_a_query_counter_that_fails_leaves_the_search_working(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "x.ragkit") as index:
        index.add([Document(f"d{i}", f"page {i} about bees hives honey") for i in range(4)])

        def broken() -> object:
            raise OSError("tokenizer.json is missing")

        index.embedder.token_counter = broken  # type: ignore[method-assign]
        assert index.search("bees honey", k=2)
        assert index.query_encoder.fragmentation("bees honey") is None
