"""Tests for ragkit.lexical (BM25Index) against rank_bm25, and for ragkit.analysis (the tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from ragkit.text.analysis import Analyzer
from ragkit.errors import ConfigError
from ragkit.storage.bm25 import BM25Index, BM25Params, bm25_ideal_score

VOCAB = ["bee", "hive", "queen", "drone", "wax", "honey", "mite", "smoke"]

# Small vocabularies make terms occur in more than half the documents, which gives negative IDFs:
# the case where rank_bm25's epsilon floor (and ragkit's copy of it) matters.
doc_st = st.lists(st.sampled_from(VOCAB), min_size=0, max_size=12)
corpus_st = st.lists(doc_st, min_size=1, max_size=15).filter(lambda c: any(c))
query_st = st.lists(st.sampled_from(VOCAB + ["unknown"]), min_size=1, max_size=6)


OKAPI = BM25Params(idf="okapi")  # rank_bm25's IDF (the default is Lucene's)


def assert_parity(
    index: BM25Index, corpus: list[list[str]], queries: list[list[str]], **params: float
) -> None:
    oracle = BM25Okapi(corpus, **params)
    assert index.n_docs == len(corpus)
    for query in queries:
        expected = oracle.get_scores(query)
        # rank_bm25 divides 0 by 0 for an empty document when b=1 (its length normalizer is 0); that
        # document matches nothing, so its score is 0.
        empty = np.array([len(d) == 0 for d in corpus])
        expected = np.where(np.isnan(expected) & empty, 0.0, expected)
        np.testing.assert_allclose(index.scores(query), expected, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- parity with rank_bm25


@settings(max_examples=80, deadline=None)
@given(corpus=corpus_st, queries=st.lists(query_st, min_size=1, max_size=5))
def test_scores_equal_rank_bm25(corpus: list[list[str]], queries: list[list[str]]) -> None:
    assert_parity(BM25Index.build(corpus, OKAPI), corpus, queries)


@settings(max_examples=40, deadline=None)
@given(
    corpus=corpus_st,
    queries=st.lists(query_st, min_size=1, max_size=3),
    k1=st.floats(0.1, 3.0),  # k1=0 makes rank_bm25 divide 0 by 0 for documents without the term
    b=st.floats(0.0, 1.0),
    epsilon=st.floats(0.0, 1.0),
)
def test_scores_equal_rank_bm25_with_other_constants(
    corpus: list[list[str]], queries: list[list[str]], k1: float, b: float, epsilon: float
) -> None:
    index = BM25Index.build(corpus, BM25Params(k1=k1, b=b, epsilon=epsilon, idf="okapi"))
    assert_parity(index, corpus, queries, k1=k1, b=b, epsilon=epsilon)


def test_repeated_query_terms_count_once_per_occurrence() -> None:
    corpus = [["bee", "hive", "wax"], ["queen", "bee"], ["drone"], ["mite", "smoke", "smoke"], ["honey"]]
    index = BM25Index.build(corpus, OKAPI)
    once, twice = index.scores(["smoke"]), index.scores(["smoke", "smoke"])
    assert once[3] > 0
    np.testing.assert_allclose(twice, 2 * once)
    assert_parity(index, corpus, [["smoke", "smoke", "bee"], ["queen", "queen", "queen"]])


@settings(max_examples=80, deadline=None)
@given(
    first=corpus_st,
    keep_bits=st.lists(st.booleans(), min_size=15, max_size=15),
    added=st.lists(doc_st, min_size=0, max_size=6),
    queries=st.lists(query_st, min_size=1, max_size=4),
)
def test_updates_equal_a_fresh_index_of_the_resulting_corpus(
    first: list[list[str]], keep_bits: list[bool], added: list[list[str]], queries: list[list[str]]
) -> None:
    keep = np.asarray(keep_bits[: len(first)])
    corpus = [doc for doc, kept in zip(first, keep) if kept] + added
    if not any(corpus):
        return  # rank_bm25 cannot score a corpus without a single token
    updated = BM25Index.build(first, OKAPI).keep_rows(keep).append(added)
    assert_parity(updated, corpus, queries)
    assert set(updated.vocab) == {t for doc in corpus for t in doc}  # terms no document uses are dropped


def test_several_rounds_of_updates_stay_equal_to_rank_bm25() -> None:
    rng = np.random.default_rng(7)
    corpus = [list(rng.choice(VOCAB, rng.integers(1, 10))) for _ in range(30)]
    index = BM25Index.build(corpus, OKAPI)
    for _ in range(10):
        keep = rng.random(len(corpus)) > 0.3
        words = VOCAB + ["propolis", "nectar"]
        added = [list(rng.choice(words, rng.integers(0, 10))) for _ in range(rng.integers(0, 8))]
        index = index.keep_rows(keep).append(added)
        corpus = [d for d, k in zip(corpus, keep) if k] + added
        assert_parity(index, corpus, [["propolis", "bee"], ["nectar", "nectar", "wax"], list(VOCAB)])


# --------------------------------------------------------------------------- top_k


def brute_force_top_k(corpus, scores, query, k, mask=None):  # type: ignore[no-untyped-def]
    ids = [i for i, doc in enumerate(corpus) if set(doc) & set(query) and (mask is None or mask[i])]
    ids.sort(key=lambda i: (-scores[i], i))
    return ids[:k]


@settings(max_examples=80, deadline=None)
@given(
    corpus=corpus_st,
    query=query_st,
    k=st.integers(1, 20),
    mask_bits=st.one_of(st.none(), st.lists(st.booleans(), min_size=15, max_size=15)),
)
def test_top_k_is_the_best_matching_documents_in_order(  # type: ignore[no-untyped-def]
    corpus, query, k, mask_bits
) -> None:
    index = BM25Index.build(corpus)
    mask = None if mask_bits is None else np.asarray(mask_bits[: len(corpus)])
    scores = index.scores(query)
    ids, top = index.top_k(query, k, mask)
    expected = brute_force_top_k(corpus, scores, query, k, mask)
    assert len(ids) == len(expected)
    np.testing.assert_array_equal(top, scores[ids])
    np.testing.assert_array_equal(top, scores[expected])  # the k best scores, best first
    assert all(top[i] > top[i + 1] or ids[i] < ids[i + 1] for i in range(len(ids) - 1))  # ties: lower id
    assert all(set(corpus[i]) & set(query) for i in ids)  # only documents that hold a query term
    if mask is not None:
        assert mask[ids].all()


def test_top_k_orders_by_score_then_lower_id() -> None:
    corpus = [["hive"], ["bee", "wax"], ["bee"], ["bee", "bee"], ["smoke"], ["bee"], ["drone"]]
    index = BM25Index.build(corpus)
    ids, scores = index.top_k(["bee"], 10)
    assert ids.tolist() == [3, 2, 5, 1]  # 2 and 5 tie: the lower id first
    assert scores[1] == scores[2]
    ids, _ = index.top_k(["bee"], 10, mask=np.array([True, True, False, False, True, True, True]))
    assert ids.tolist() == [5, 1]
    assert index.top_k(["nothing"], 5)[0].tolist() == []
    assert index.top_k(["bee"], 5, mask=np.zeros(7, dtype=bool))[0].tolist() == []
    assert BM25Index.empty().top_k(["bee"], 3)[0].tolist() == []


def test_top_k_keeps_the_lower_ids_of_a_tie_at_the_cut() -> None:
    corpus = [["bee", "wax"]] * 50 + [["bee", "bee", "wax"]] + [["bee", "wax"]] * 149 + [["smoke"]] * 600
    ids, _ = BM25Index.build(corpus).top_k(["bee"], 5)
    assert ids.tolist() == [50, 0, 1, 2, 3]


# --------------------------------------------------------------------------- persistence


def test_arrays_round_trip_through_npy_files_without_pickle(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    corpus = [list(rng.choice(VOCAB + ["пчела", "蜂蜜"], rng.integers(0, 12))) for _ in range(40)]
    index = BM25Index.build(corpus).keep_rows(rng.random(40) > 0.2).append([["новый", "bee"]])
    for name, array in index.to_arrays().items():
        np.save(tmp_path / f"{name}.npy", array, allow_pickle=False)
    (tmp_path / "terms.json").write_text(json.dumps(index.terms(), ensure_ascii=False), encoding="utf-8")

    arrays = {p.stem: np.load(p, allow_pickle=False) for p in tmp_path.glob("*.npy")}
    terms = json.loads((tmp_path / "terms.json").read_text("utf-8"))
    loaded = BM25Index.from_arrays(arrays, terms, index.params)
    assert loaded.vocab == index.vocab
    assert loaded.n_docs == index.n_docs
    for query in (["bee", "wax"], ["пчела"], ["新", "蜂蜜", "honey"], ["новый"]):
        np.testing.assert_array_equal(loaded.scores(query), index.scores(query))
        assert bm25_ideal_score(loaded, query) == bm25_ideal_score(index, query)
    assert loaded.append([["mite"]]).n_docs == index.n_docs + 1


def test_bm25_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="k1"):
        BM25Params(k1=-1.0)
    with pytest.raises(ConfigError, match="b"):
        BM25Params(b=1.5)
    with pytest.raises(ConfigError, match="okapi"):
        BM25Params(idf="tfidf")  # type: ignore[arg-type]


def test_lucene_idf_is_always_positive() -> None:
    corpus = [["bee", "hive"], ["bee"], ["bee", "wax"]]  # "bee" is in every document
    okapi = BM25Index.build(corpus, OKAPI).scores(["bee"])
    lucene = BM25Index.build(corpus, BM25Params(idf="lucene")).scores(["bee"])
    assert (lucene > 0).all()
    expected_idf = np.log1p((3 - 3 + 0.5) / (3 + 0.5))
    doc_len, avgdl = np.array([2, 1, 2]), 5 / 3
    np.testing.assert_allclose(lucene, expected_idf * 2.5 / (1 + 1.5 * (0.25 + 0.75 * doc_len / avgdl)))
    assert not np.allclose(okapi, lucene)


# --------------------------------------------------------------------------- analyzer


def test_default_analyzer_lowercases_drops_stopwords_and_stems() -> None:
    analyzer = Analyzer()
    assert analyzer.tokenize("The bees were swarming in May") == ["bee", "swarm", "may"]
    assert analyzer.tokenize("not the queen") == ["not", "queen"]  # negations are not stopwords
    assert analyzer.tokenize("ＨＯＮＥＹ, Honey; honey!") == ["honey"] * 3  # NFKC folds full-width letters
    plain = Analyzer(stemming=False, stopwords=False)
    assert plain.tokenize("The bees were swarming") == ["the", "bees", "were", "swarming"]
    assert Analyzer(stopwords=False).tokenize("The bees") == ["the", "bee"]
    assert Analyzer(extra_stopwords=frozenset({"bee"})).tokenize("bee hive") == ["hive"]
    assert Analyzer(language="german").tokenize("Bienen sammeln") == ["bien", "sammel"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Пчёлы собирают нектар", ["пчёлы", "собирают", "нектар"]),
        ("النحل يصنع العسل", ["النحل", "يصنع", "العسل"]),
        # Devanagari vowel signs are combining marks: they stay inside their words
        ("मधुमक्खी शहद बनाती", ["मधुमक्खी", "शहद", "बनाती"]),
    ],
    ids=["cyrillic", "arabic", "devanagari"],
)
def test_words_of_spaced_scripts_are_kept_whole(text: str, expected: list[str]) -> None:
    assert Analyzer().tokenize(text) == expected


@pytest.mark.parametrize(
    ("sentence", "word"),
    [("蜜蜂采集花蜜", "花蜜"), ("ミツバチは蜂蜜を作ります", "蜂蜜"), ("ผึ้งเก็บน้ำหวาน", "น้ำหวาน")],
    ids=["chinese", "japanese", "thai"],
)
def test_unspaced_scripts_become_several_tokens_a_word_query_can_match(sentence: str, word: str) -> None:
    analyzer = Analyzer()
    tokens = analyzer.tokenize(sentence)
    assert len(tokens) >= 4, tokens
    assert all(len(t) <= 2 for t in tokens)
    query = analyzer.tokenize(word)
    assert query and set(query) <= set(tokens)
    index = BM25Index.build([analyzer.tokenize("bees make honey"), tokens, analyzer.tokenize("hive")])
    assert index.top_k(query, 3)[0].tolist() == [1]


def test_mixed_scripts_split_at_the_script_boundary() -> None:
    assert Analyzer().tokenize("honey蜂蜜 wax") == ["honey", "蜂蜜", "wax"]


def test_analyzer_settings_round_trip_through_json() -> None:
    analyzer = Analyzer(language="german", stopwords=False, extra_stopwords=frozenset({"und", "die"}))
    restored = Analyzer.from_config(json.loads(json.dumps(analyzer.to_config())))
    assert restored == analyzer
    assert restored.tokenize("Die Bienen und die Königin") == analyzer.tokenize("Die Bienen und die Königin")
    assert Analyzer.from_config({}) == Analyzer()


def test_unknown_language_is_a_config_error_listing_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="klingon.*english"):
        Analyzer(language="klingon")
    from ragkit.index import Index

    with pytest.raises(ConfigError, match="klingon"):
        Index(tmp_path / "index.ragkit", language="klingon")
