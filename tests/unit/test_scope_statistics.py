"""A filtered search scores as if the filtered chunks were the whole collection (issue 20, tenancy).

The strongest form: index X holds only the documents a scope admits, index Y holds them plus other
tenants' documents written in the same vocabulary (so a collection-wide IDF, avgdl, ideal score or
dense background would differ). A search on Y under the scope must give X's hits exactly: the same
chunks, scores, per-leg scores, ranks, relevance and ``min_score="auto"`` cut. Unfiltered searches
are unchanged (a copy of the collection-wide formula is the oracle).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fakes import open_fake_index
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit import Document
from ragkit.storage.bm25 import BM25Index, BM25Params, ideal_score, idf, saturation, unseen_idf
from ragkit.storage.local.snapshot import background_sample

TEAMS = ("a", "b", "c", "d")
COMMON = ["bees", "honey", "queen", "hive", "frames", "wax", "colony", "swarm", "brood", "comb"]
RARE = {"a": ["varroa", "oxalic", "mites"], "b": ["foulbrood", "larvae", "burn"],
        "c": ["extractor", "supers", "capped"], "d": ["excluder", "winter", "cluster"]}
WORDS = COMMON + [w for words in RARE.values() for w in words] + ["absent", "nowhere"]


def corpus(seed: int = 7, n: int = 48) -> list[Document]:
    """Documents of four teams over one shared vocabulary: each team repeats the common words at its own
    rate and lengths, and other teams' rare words appear too, so every statistic differs by scope."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        team = TEAMS[i % 4]
        length = rng.randint(3, 12 + 6 * TEAMS.index(team))
        pool = COMMON[: 4 + 2 * TEAMS.index(team)] * 3 + RARE[team] * 2 + RARE[rng.choice(TEAMS)]
        text = " ".join(rng.choice(pool) for _ in range(length))
        docs.append(Document(f"{team}-{i}", text, {"team": team, "n": i}))
    return docs


DOCS = corpus()


def same_hits(got: list, want: list) -> None:  # type: ignore[type-arg]
    assert [h.chunk_id for h in got] == [h.chunk_id for h in want]
    for g, w in zip(got, want):
        assert (g.bm25_rank, g.dense_rank) == (w.bm25_rank, w.dense_rank), g.chunk_id
        for field in ("score", "bm25_score", "dense_score", "relevance"):
            a, b = getattr(g, field), getattr(w, field)
            assert (a is None) == (b is None), field
            if a is not None:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), (field, g.chunk_id)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """``get(teams, idf)``: the index of those teams' documents only (None: every team), built once."""
    built: dict[tuple[tuple[str, ...] | None, str], object] = {}
    root = tmp_path_factory.mktemp("scopes")

    def get(teams: tuple[str, ...] | None, kind: str):  # type: ignore[no-untyped-def]
        key = (teams, kind)
        if key not in built:
            index = open_fake_index(root / f"{'-'.join(teams or ('all',))}-{kind}", bm25_idf=kind)
            index.add([d for d in DOCS if teams is None or d.metadata["team"] in teams])  # same order as Y
            built[key] = index
        return built[key]

    return get


SEARCHES = st.fixed_dictionaries({
    "mode": st.sampled_from(["hybrid", "hybrid", "bm25", "dense"]),
    "method": st.sampled_from(["adaptive", "adaptive", "rrf", "convex", "dbsf"]),
    "min_score": st.sampled_from([None, "auto"]),
    "k": st.integers(1, 8),
    "depth": st.sampled_from([None, 5]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(teams=st.sets(st.sampled_from(TEAMS), min_size=1, max_size=3),
       words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=5),
       kind=st.sampled_from(["lucene", "okapi"]), search=SEARCHES)
def test_a_scoped_search_on_the_shared_index_equals_the_same_search_on_an_index_of_the_scope_alone(
        indexes, teams, words, kind, search) -> None:  # type: ignore[no-untyped-def]
    scope = tuple(sorted(teams))
    alone, shared = indexes(scope, kind), indexes(None, kind)
    query, k = " ".join(words), search.pop("k")
    depth = search.pop("depth")
    options = {**search, **({"depth": depth} if depth else {})}
    want = alone.search(query, k, **options)
    got = shared.search(query, k, filters={"team": {"in": list(scope)}}, **options)
    same_hits(got, want)
    if search["min_score"] == "auto" and search["mode"] != "bm25":  # the same kept/dropped split
        everything = {h.chunk_id: h.relevance for h in shared.search(
            query, 40, filters={"team": {"in": list(scope)}}, **{**options, "min_score": None})}
        assert {h.chunk_id for h in got} <= {c for c, r in everything.items() if r >= 0.5}


def test_a_filter_narrower_than_a_team_and_a_filter_on_several_fields_are_subcollections_too(indexes) -> None:  # type: ignore[no-untyped-def]
    shared = indexes(None, "lucene")
    kept = [d for d in DOCS if d.metadata["team"] in ("a", "b") and d.metadata["n"] >= 20]
    with open_fake_index(Path(shared.path).parent / "narrow") as alone:
        alone.add(kept)
        for query in ("varroa mites honey", "bees queen absent", "foulbrood", "comb wax wax"):
            want = alone.search(query, 5, min_score="auto")
            got = shared.search(query, 5, filters={"team": {"in": ["a", "b"]}, "n": {"gte": 20}}, min_score="auto")
            same_hits(got, want)


def test_other_tenants_documents_move_no_score_relevance_or_auto_cut(indexes) -> None:  # type: ignore[no-untyped-def]
    """The leak this closes: before, team b's documents changed team a's IDF and so its scores."""
    alone, shared = indexes(("a",), "lucene"), indexes(None, "lucene")
    query = "bees honey queen varroa"
    unscoped_scores = {h.chunk_id: h.bm25_score for h in shared.search(query, 20, mode="bm25")}
    scoped = shared.search(query, 20, mode="bm25", filters={"team": "a"})
    assert any(unscoped_scores.get(h.chunk_id) != pytest.approx(h.bm25_score) for h in scoped)  # IDF differs
    same_hits(scoped, alone.search(query, 20, mode="bm25"))


def test_a_query_word_only_other_tenants_hold_counts_as_unseen(indexes) -> None:  # type: ignore[no-untyped-def]
    alone, shared = indexes(("c",), "lucene"), indexes(None, "lucene")
    held_by = lambda team: {w for d in DOCS if d.metadata["team"] == team for w in d.text.split()}
    foreign = min(held_by("a") - held_by("c"))  # the collection holds it, team c's scope does not
    with_foreign = f"supers capped {foreign}"
    view = shared.snapshot().filtered({"team": "c"})
    query = shared.query_encoder.encode(with_foreign, with_vector=True)[0]
    stats, alone_stats = view.statistics(query), alone.snapshot().statistics(query)
    assert stats.bm25_unseen == pytest.approx(alone_stats.bm25_unseen) and stats.bm25_unseen > 0
    assert stats.bm25_ideal == pytest.approx(alone_stats.bm25_ideal)
    assert stats.n_searched == alone_stats.n_searched == sum(d.metadata["team"] == "c" for d in DOCS)


def test_a_scope_matching_nothing_returns_nothing(indexes) -> None:  # type: ignore[no-untyped-def]
    shared = indexes(None, "okapi")
    assert shared.search("bees honey", 5, filters={"n": {"gt": 10_000}}) == []
    view = shared.snapshot().filtered({"n": {"gt": 10_000}})
    query = shared.query_encoder.encode("bees honey", with_vector=True)[0]
    stats = view.statistics(query)
    assert (stats.bm25_ideal, stats.n_searched, len(stats.dense_background)) == (0.0, 0, 0)


def test_scope_statistics_are_cached_per_filter_and_dropped_with_the_snapshot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "kb") as index:
        index.add(DOCS[:20])
        view = index.snapshot()
        first = view.filtered({"team": {"in": ["a", "b"]}}).scope
        assert view.filtered({"team": {"in": ["a", "b"]}}).scope is first  # same filter: built once
        assert index.snapshot().filtered({"team": {"in": ["a", "b"]}}).scope is first
        index.add(DOCS[20:24])  # a commit: a new snapshot, scopes built again from its rows
        again = index.snapshot().filtered({"team": {"in": ["a", "b"]}}).scope
        assert again is not first and again.n_rows == sum(d.metadata["team"] in "ab" for d in DOCS[:24])


# -- the BM25 formula within a subcollection, against a direct computation ------------------------------
def oracle_scores(tokens: list[list[str]], mask: np.ndarray, query: list[str], params: BM25Params) -> np.ndarray:
    """BM25 of the masked documents computed from scratch, as on an index holding only them."""
    kept = [t for t, m in zip(tokens, mask) if m]
    n, avgdl = len(kept), np.mean([len(t) for t in kept])
    vocab_df = Counter(w for t in kept for w in set(t))
    mean = float(np.mean(np.log(n - np.array(list(vocab_df.values())) + 0.5)
                         - np.log(np.array(list(vocab_df.values())) + 0.5)))
    out = np.zeros(len(tokens))
    for row, t in enumerate(tokens):
        if not mask[row]:
            continue
        counts = Counter(t)
        for term, c in Counter(query).items():
            if counts[term]:
                w = float(idf(n, np.array([vocab_df[term]], float), params, mean)[0])
                out[row] += c * w * float(saturation(np.array([counts[term]]), len(t), avgdl, params.k1, params.b)[0])
    return out


@pytest.mark.parametrize("kind", ["lucene", "okapi"])
def test_scoped_bm25_equals_a_from_scratch_computation_and_an_index_of_the_rows(kind) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    tokens = [list(rng.choice(WORDS[:12], size=rng.integers(1, 15))) for _ in range(200)]
    params = BM25Params(idf=kind)  # type: ignore[arg-type]
    index = BM25Index.build(tokens, params)
    for _ in range(20):
        mask = rng.random(200) < rng.uniform(0.05, 0.9)
        query = list(rng.choice(WORDS[:14], size=rng.integers(1, 5)))
        scope = index.subcollection(mask)
        got = index.scoped(query, scope)
        alone = BM25Index.build([t for t, m in zip(tokens, mask) if m], params)
        np.testing.assert_allclose(got.scores, oracle_scores(tokens, mask, query, params), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.scores[mask], alone.scores(query), rtol=1e-12, atol=1e-12)
        assert not got.matched[~mask].any()
        held = [(alone.vocab[t], c) for t, c in Counter(query).items() if t in alone.vocab]
        assert got.ideal == pytest.approx(ideal_score(alone.term_idf(np.array([h[0] for h in held], np.int64)),
                                                      np.array([h[1] for h in held], float)) if held else 0.0)
        absent = sum(c for t, c in Counter(query).items() if t not in alone.vocab)
        assert got.unseen == pytest.approx(absent * unseen_idf(alone.n_docs, params) if absent else 0.0)


def test_unfiltered_scores_are_the_collection_wide_formula_unchanged() -> None:
    """The unfiltered path is the code it was: scores equal the collection-wide formula bit for bit,
    and a subcollection of every row gives them too."""
    rng = np.random.default_rng(5)
    tokens = [list(rng.choice(WORDS, size=rng.integers(1, 20))) for _ in range(300)]
    index = BM25Index.build(tokens, BM25Params())
    n, df = len(tokens), Counter(w for t in tokens for w in set(t))
    avgdl = np.asarray([len(t) for t in tokens], np.float64).mean()
    for query in (["bees", "honey"], ["varroa", "varroa", "absent"], ["comb"]):
        want = np.zeros(n)
        for term, c in Counter(query).items():
            if term in df:
                w = np.log1p((n - df[term] + 0.5) / (df[term] + 0.5))
                tf = np.array([Counter(t)[term] for t in tokens], np.float64)
                hit = tf > 0
                want[hit] += (c * w) * saturation(tf[hit], np.array([len(t) for t in tokens])[hit], avgdl, 1.5, 0.75)
        assert np.array_equal(index.scores(query), want)
        np.testing.assert_allclose(index.scoped(query, index.subcollection(np.ones(n, bool))).scores, want,
                                   rtol=1e-12)


def test_the_background_sample_of_a_scope_is_the_sample_an_index_of_it_would_draw() -> None:
    vectors = np.random.default_rng(1).standard_normal((5000, 8)).astype(np.float32)
    mask = np.random.default_rng(2).random(5000) < 0.5  # over BACKGROUND_SAMPLE rows in scope
    assert np.array_equal(background_sample(vectors, mask), background_sample(vectors[mask]))
    assert np.array_equal(background_sample(vectors, np.ones(5000, bool)), background_sample(vectors))
