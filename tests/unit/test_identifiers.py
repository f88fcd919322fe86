"""BM25 analysis version 2: code identifiers index as their parts too, the whole token kept; an index
built before versions keeps analysing queries as it was built (version 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeEmbedder

from ragkit import ConfigError, Document, Index
from ragkit.storage.bm25 import BM25Index
from ragkit.text.analysis import ANALYZER_VERSION, Analyzer

V1, V2 = Analyzer(version=1), Analyzer(version=2)


@pytest.mark.parametrize(("identifier", "parts"), [
    ("CORSMiddleware", ["cor", "middlewar"]),
    ("get_db_session", ["get", "db", "session"]),
    ("HTTPException", ["http", "except"]),
    ("OAuth2PasswordBearer", ["oauth2", "password", "bearer"]),
    ("XMLHttpRequest", ["xml", "http", "request"]),
    ("getDbSession", ["get", "db", "session"]),
])
def test_an_identifier_indexes_as_itself_and_its_parts(identifier: str, parts: list[str]) -> None:
    terms = V2.tokenize(identifier)
    assert terms[0] == V1.tokenize(identifier.replace("_", ""))[0] or "_" in terms[0]  # the whole token first
    assert terms[1:] == parts


def test_the_whole_identifier_is_one_term_a_query_for_it_still_matches() -> None:
    assert V2.tokenize("get_db_session")[0] == "get_db_sess"
    assert V2.tokenize("CORSMiddleware")[0] == "corsmiddlewar"
    index = BM25Index.build(V2.tokenize_many(["Use CORSMiddleware here.", "Plain middleware talk."]))
    rows, _ = index.top_k(V2.tokenize("CORSMiddleware"), 2)
    assert rows[0] == 0  # the exact identifier outranks a document with only one of its parts


def test_words_and_scientific_terms_stay_whole() -> None:
    for text in ("The bees were swarming in May", "mRNA miRNAs MSCs IgG BRCA1 HbA1c NF-κB iPhone getURL"):
        assert V2.tokenize(text) == V1.tokenize(text)


def test_a_query_in_words_finds_the_identifier_with_version_2_only() -> None:
    texts = ["Use `CORSMiddleware` to allow cross-origin requests.", "Cookies are set with a response header."]
    for analyzer, found in ((V2, True), (V1, False)):
        index = BM25Index.build(analyzer.tokenize_many(texts))
        rows, _ = index.top_k(analyzer.tokenize("add CORS middleware"), 2)
        assert (0 in rows.tolist()) is found


def test_an_unknown_version_is_a_config_error_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"version 9.*\(1, 2, 3, 4, 5\)"):
        Analyzer(version=9)


def _index(path: Path) -> Index:
    return Index(path, embedder=FakeEmbedder(), show_progress=False)


DOC = Document("cors.md", "# CORS\n\nUse `CORSMiddleware` to allow cross-origin requests.\n", {"source": "cors.md"})


def test_a_new_index_records_the_current_version(tmp_path: Path) -> None:
    index = _index(tmp_path / "kb")
    index.add([DOC])
    assert index.backend.get_config()["analyzer_version"] == ANALYZER_VERSION == 5
    assert [h.doc_id for h in index.search("cors middleware", mode="bm25")] == ["cors.md"]
    index.close()


def test_an_index_from_before_versions_analyses_as_it_was_built(tmp_path: Path) -> None:
    index = _index(tmp_path / "kb")
    index.add([Document("seed.md", "# Seed\n\nHives and frames.\n", {"source": "seed.md"})])
    config = index.backend.get_config()
    del config["analyzer_version"]  # what an index written by the previous release stores
    index.backend.set_config(config)
    index.close()
    old = _index(tmp_path / "kb")
    assert old.analyzer == Analyzer(version=1, language=config["language"]) and old.config.analyzer_version == 1
    old.add([DOC])  # documents added later are analysed like the ones before them
    assert [h.doc_id for h in old.search("CORSMiddleware", mode="bm25")] == ["cors.md"]
    assert old.search("middleware", mode="bm25") == []  # as before: parts were never indexed
    assert old.backend.get_config().get("analyzer_version", 1) == 1
    old.close()
    new = _index(tmp_path / "rebuilt")  # a rebuild (``--rebuild``) analyses with the current version
    new.add([DOC])
    assert [h.doc_id for h in new.search("middleware", mode="bm25")] == ["cors.md"]
    new.close()
