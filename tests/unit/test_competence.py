"""The dense leg's known-item self-test (``ragkit.retrieval.competence``): measured when an index grows,
stored with it, and read by fusion (``fusion.yielded_weight``)."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from fakes import DIMENSION, FakeEmbedder, open_fake_index
from ragkit import Document
from ragkit.retrieval import competence
from ragkit.retrieval.competence import DenseCompetence, probe_window, reciprocal_rank, sample_documents
from ragkit.retrieval.fusion import DENSE_COMPETENCE, yielded_weight

WORDS = ("hive queen drone worker brood comb frame nectar pollen propolis wax smoke veil swarm colony apiary "
         "forage clover heather lime acacia syrup fondant mite varroa beetle moth entrance winter spring").split()


VOCABULARY = [f"{a}{b}" for a in WORDS for b in ("", "s", "ing", "ed", "er", "ish", "like", "ful")]


def notes(n: int, seed: int = 0) -> list[Document]:
    """Notes of 40 words drawn from 240, so a run of 8 of them almost always points to its own note."""
    rng = random.Random(seed)
    return [Document(f"n{seed}-{i}", " ".join(rng.choice(VOCABULARY) for _ in range(40)) + f" note{seed}x{i}")
            for i in range(n)]


class UnreadableEmbedder(FakeEmbedder):
    """A model that reads nothing: each text gets a random unit vector of its own (seeded by its hash)."""

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.encoded.extend(texts)
        vectors = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=DIMENSION)
                   for t in texts]
        return np.array([v / np.linalg.norm(v) for v in vectors], np.float32).reshape(len(texts), DIMENSION)


def test_a_probe_is_consecutive_words_of_the_text_as_written() -> None:
    rng = random.Random(3)
    text = "Bees, in winter, cluster tightly; the queen stays warm at the centre of the ball of bees."
    for _ in range(20):
        window = probe_window(text, rng, words=4)
        assert window is not None and window in text and len(window.replace(",", " ").replace(";", " ").split()) == 4
    assert probe_window("too short", rng, words=4) is None
    chinese = probe_window("使用状态钩子可以让组件记住信息并在交互后更新界面", rng, words=6)
    assert chinese is not None and len(chinese) == 6  # one ideograph is one unit


def test_reciprocal_rank_and_the_uniform_reservoir() -> None:
    assert reciprocal_rank(["a", "b", "c"], "b") == 0.5 and reciprocal_rank(["a"], "z") == 0.0
    items = [(str(i), "t") for i in range(1000)]
    kept = sample_documents(iter(items), 50, seed=1)
    assert len(kept) == 50 and len(set(kept)) == 50
    assert 300 < np.mean([int(i) for i, _ in kept]) < 700  # not the first 50
    assert sample_documents(iter(items[:10]), 50) == items[:10]


def test_a_measure_is_redone_once_the_index_doubles_or_halves() -> None:
    measured = DenseCompetence(documents=100, probes=96, bm25_mrr=0.9, dense_mrr=0.45)
    assert measured.ratio == pytest.approx(0.5)
    assert not measured.stale(150) and not measured.stale(60)
    assert measured.stale(200) and measured.stale(50)
    assert DenseCompetence.from_dict(measured.to_dict()) == measured
    assert DenseCompetence(100, 96, 0.0, 0.0).ratio is None


@pytest.mark.parametrize(("ratio", "share"), [
    (None, 0.4), (0.9, 0.4), (DENSE_COMPETENCE[1], 0.4), (0.2, 0.2), (DENSE_COMPETENCE[0], 0.0), (0.0, 0.0),
])
def test_the_dense_share_follows_the_dense_legs_competence(ratio: float | None, share: float) -> None:
    assert yielded_weight(0.4, 20, 0.0, dense_competence=ratio) == pytest.approx(share)  # a long query: no yield


def test_an_index_measures_its_dense_leg_when_it_grows_and_keeps_it(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "x.ragkit") as index:
        index.add(notes(competence.MIN_DOCUMENTS - 1))
        assert index.config.dense_competence is None  # too few documents to say anything
        index.add(notes(competence.MIN_DOCUMENTS, seed=1))
        first = DenseCompetence.from_dict(index.config.dense_competence or {})
        assert first.documents == 2 * competence.MIN_DOCUMENTS - 1 and first.probes > 0
        assert first.bm25_mrr > 0.9 and first.ratio is not None and first.ratio > DENSE_COMPETENCE[1]
        assert index.learned_state().dense_competence == pytest.approx(first.ratio)
        shown = index.info()  # what `ragkit info` prints
        assert shown["dense_competence"]["probes"] == first.probes and 0 < shown["corpus_fragmentation"] < 1.3
        assert shown["dense_competence"]["ratio"] == round(first.ratio, 3)  # what fusion reads
        index.add(notes(10, seed=2))  # not yet twice as many: not measured again
        assert DenseCompetence.from_dict(index.config.dense_competence or {}) == first
        index.add(notes(60, seed=3))
        assert DenseCompetence.from_dict(index.config.dense_competence or {}).documents == 2 * competence.MIN_DOCUMENTS + 69
    with open_fake_index(tmp_path / "x.ragkit") as reopened:
        assert reopened.learned_state().dense_competence == pytest.approx(
            DenseCompetence.from_dict(reopened.config.dense_competence or {}).ratio)


def test_over_a_model_that_reads_nothing_the_hybrid_ranks_as_bm25(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "x.ragkit", embedder=UnreadableEmbedder()) as index:
        index.add(notes(40))
        measured = DenseCompetence.from_dict(index.config.dense_competence or {})
        assert measured.bm25_mrr > 0.9 and measured.dense_mrr < 0.2
        assert index.learned_state().dense_competence < DENSE_COMPETENCE[0]  # type: ignore[operator]
        for query in ("queen brood varroa", "note0x7", "winter cluster heather syrup"):
            hybrid = [h.chunk_id for h in index.search(query, k=8)]
            bm25 = [h.chunk_id for h in index.search(query, k=8, mode="bm25")]
            assert hybrid[: len(bm25)] == bm25


def test_a_sync_measures_too_and_a_damaged_stored_measure_stops_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for doc in notes(40):
        (folder / f"{doc.id}.md").write_text(doc.text, encoding="utf-8")
    with open_fake_index(tmp_path / "x.ragkit") as index:
        assert not index.sync(folder).failed
        assert DenseCompetence.from_dict(index.config.dense_competence or {}).documents == 40
        index._update_config(dense_competence={"documents": 40})  # damaged: no MRRs
    with open_fake_index(tmp_path / "x.ragkit") as damaged, caplog.at_level(logging.WARNING, logger="ragkit"):
        assert damaged.learned_state().dense_competence is None and damaged.search("queen brood", k=3)
        assert damaged.info()["dense_competence"] is None
        report = damaged.add(notes(50, seed=4))  # measured afresh over the damaged value
        assert len(report.added) == 50 and damaged.learned_state().dense_competence is not None
        assert "does not parse" in caplog.text


def test_a_measure_that_cannot_be_stored_leaves_the_write_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with open_fake_index(tmp_path / "x.ragkit") as index, caplog.at_level(logging.WARNING, logger="ragkit"):
        index.add(notes(5))  # the config exists before the failure below
        real = index.backend.set_config

        def failing(config: dict) -> None:
            if config.get("dense_competence"):
                raise OSError("disk full")
            real(config)

        monkeypatch.setattr(index.backend, "set_config", failing)
        report = index.add(notes(40, seed=5))
        assert len(report.added) == 40 and len(index.documents()) == 45
        assert index.config.dense_competence is None and "competence" in caplog.text


def test_a_measure_that_fails_is_logged_and_the_write_stands(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the query encoder is gone")

    monkeypatch.setattr(competence, "measure", broken)
    with open_fake_index(tmp_path / "x.ragkit") as index, caplog.at_level(logging.WARNING, logger="ragkit"):
        report = index.add(notes(40))
        assert len(report.added) == 40 and len(index.documents()) == 40
        assert index.config.dense_competence is None and "competence" in caplog.text
        assert index.search("queen brood", k=3)


def test_documents_too_short_to_probe_give_no_evidence_and_are_not_sampled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples = []
    real = competence.sample_documents
    monkeypatch.setattr(competence, "sample_documents", lambda *a, **k: samples.append(1) or real(*a, **k))
    with open_fake_index(tmp_path / "x.ragkit") as index:
        index.add([Document(f"t{i}", f"queen {i} brood") for i in range(40)])  # three words each
        measured = DenseCompetence.from_dict(index.config.dense_competence or {})
        assert (measured.documents, measured.probes, measured.ratio) == (40, 0, None)
        assert index.learned_state().dense_competence is None  # fusion as if never measured
        index.add([Document("t40", "one more short note")])
        assert len(samples) == 1  # the stored empty measure holds until the index doubles
