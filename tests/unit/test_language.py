"""``language="auto"``: each word stemmed for its script (``ragkit.text.language``), English as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeEmbedder

from ragkit import ConfigError, Document, Index
from ragkit.text.analysis import ANALYZER_VERSION, Analyzer
from ragkit.text.language import detach_clitics, script_language


@pytest.mark.parametrize(("word", "language"), [
    ("пчёлы", "russian"), ("λόγος", "greek"), ("كتاب", "arabic"), ("मधुमक्खी", "hindi"),
    ("bees", None), ("東京", None), ("cd8α", None), ("κstudy", None), ("", None),
])
def test_a_word_gets_the_stemmer_of_the_one_script_it_is_written_in(word: str, language: str | None) -> None:
    assert script_language(word) == language


def test_auto_stems_each_word_for_its_script_and_english_as_english_does() -> None:
    auto, english = Analyzer(language="auto"), Analyzer()
    text = "The bees were swarming: TNF-α, cd8α"
    assert auto.tokenize(text) == english.tokenize(text)
    russian = Analyzer(language="russian", stopwords=False)
    assert auto.tokenize("пчёлами пчёлы") == russian.tokenize("пчёлами пчёлы")
    assert auto.tokenize("пчёлами пчёлы")[0] == auto.tokenize("пчёлами пчёлы")[1]  # one term for both forms
    mixed = auto.tokenize("Команда dw удаляет words")  # order kept across scripts
    assert mixed == [*russian.tokenize("Команда"), "dw", *russian.tokenize("удаляет"), "word"]


def test_auto_round_trips_and_an_unknown_language_still_fails() -> None:
    auto = Analyzer(language="auto")
    assert Analyzer.from_config(auto.to_config()) == auto
    with pytest.raises(ConfigError, match="klingon"):
        Analyzer(language="klingon")


def test_a_new_index_stems_by_script_and_an_old_config_stays_english() -> None:
    from ragkit.index import IndexConfig

    assert IndexConfig().language == "auto"
    assert IndexConfig.from_dict({"model": "m"}).language == "english"  # stored before the default changed
    assert IndexConfig.from_dict({"model": "m", "language": "german"}).language == "german"


@pytest.mark.parametrize(("word", "detached"), [
    ("l'état", "état"), ("L'État", "État"), ("qu'il", "il"), ("jusqu'ici", "ici"), ("dell'arte", "arte"),
    ("d'aujourd'hui", "aujourdhui"), ("don't", "dont"), ("I'm", "Im"), ("o'clock", "oclock"), ("y'all", "yall"),
    ("والخوارزميات", "الخوارزميات"), ("فالكتاب", "الكتاب"), ("وكتاب", "وكتاب"), ("وال", "وال"), ("bees", "bees"),
])
def test_elided_articles_and_arabic_conjunctions_come_off_and_english_words_stay(word: str, detached: str) -> None:
    assert detach_clitics(word) == detached


def test_version_3_matches_french_and_arabic_words_across_clitics_and_version_2_analyses_as_built() -> None:
    v3, v2 = Analyzer(language="auto", version=3), Analyzer(language="auto", version=2)
    assert v3.tokenize("l'économie") == v3.tokenize("économie") != v2.tokenize("l'économie")
    assert v3.tokenize("والخوارزميات") == v3.tokenize("الخوارزميات") == v3.tokenize("بالخوارزميات")
    english = "The bee's hive isn't O'Brien's: CORSMiddleware, get_db_session, TNF-α"
    assert v3.tokenize(english) == v2.tokenize(english)


def test_a_new_index_sizes_chunks_at_most_by_the_estimate_and_an_old_one_as_it_was_built(tmp_path) -> None:
    from fakes import FakeEmbedder

    from ragkit import Document, Index
    from ragkit.index import IndexConfig

    assert IndexConfig().chunk_counter == "model-or-estimate"
    assert IndexConfig.from_dict({"model": "m"}).chunk_counter == "model"  # stored before the counter was

    class EnglishOnly(FakeEmbedder):
        def token_counter(self):  # type: ignore[no-untyped-def]
            return lambda text: sum(4 if "\u0600" <= w[0] <= "\u06ff" else 1 for w in text.split())

    text = " ".join(["الخوارزميات", "نظرية", "الألعاب", "التوافقية"] * 150)
    with Index(tmp_path / "kb", embedder=EnglishOnly(), show_progress=False, chunk_size=100, chunk_overlap=0) as new:
        new.add([Document("ar", text)])
        fair = len(new)  # about 40 words a chunk (2.5 estimated tokens each): 600 words, 15 or 16 chunks
        assert new.backend.get_config()["chunk_counter"] == "model-or-estimate" and fair <= 16
        config = {**new.backend.get_config()}
        del config["chunk_counter"]  # what an index written by the previous release stores
        new.backend.set_config(config)
    with Index(tmp_path / "kb", embedder=EnglishOnly(), show_progress=False) as old:
        old.add([Document("ar2", text)])  # later documents are chunked as the earlier ones were
        assert len(old) - fair >= 24  # 25 words a chunk: 100 model tokens


def test_a_chunk_longer_than_the_model_window_is_embedded_as_the_mean_of_its_windows(tmp_path) -> None:
    import numpy as np
    from fakes import FakeEmbedder, embed

    from ragkit import Document, Index
    from ragkit.ingest.chunking import embedding_windows

    class EnglishOnly(FakeEmbedder):
        def token_counter(self):  # type: ignore[no-untyped-def]
            return lambda text: sum(4 if "\u0600" <= w[0] <= "\u06ff" else 1 for w in text.split())

    embedder = EnglishOnly(max_seq_length=66)  # a window of 64 tokens: 16 Arabic words
    text = " ".join(["الخوارزميات", "نظرية", "الألعاب", "التوافقية"] * 10)
    with Index(tmp_path / "kb", embedder=embedder, show_progress=False, chunk_overlap=0) as index:
        index.add([Document("ar", text), Document("en", "bees make honey")])
        count = embedder.token_counter()
        assert all(count(t) <= 64 for t in embedder.encoded)  # the model read every window whole
        windows = [t for t in embedder.encoded if t in text and t != text]
        assert len(windows) >= 2 and "bees make honey" in embedder.encoded  # a chunk that fits: as before
        for chunk in [h for h in index.search("نظرية", k=5, mode="bm25") if h.doc_id == "ar"]:
            mean = np.mean([embed(t) for t in embedding_windows(chunk.text, count, 64)], axis=0)
            found = index.search("x", k=1, mode="dense", query_vector=mean / np.linalg.norm(mean))[0]
            assert found.chunk_id == chunk.chunk_id and found.dense_score == pytest.approx(1.0, abs=1e-5)


def test_version_4_also_indexes_the_letters_of_a_word_that_ends_in_digits() -> None:
    v4, v3 = Analyzer(language="auto", version=4), Analyzer(language="auto", version=3)
    assert v4.tokenize("python3 interpreter") == ["python3", "python", "interpret"]
    assert v4.tokenize("BRCA1 and CD4 cells") == ["brca1", "brca", "cd4", "cd", "cell"]
    assert v4.tokenize("x86 p53 3d h2o2 2fa") == v3.tokenize("x86 p53 3d h2o2 2fa")  # one letter, or not at the end
    assert v3.tokenize("python3 interpreter") == ["python3", "interpret"]  # an index keeps its version
    french = "l'économie des abeilles, CORSMiddleware et get_db_session"
    assert v4.tokenize(french) == v3.tokenize(french)


def test_version_5_also_indexes_the_head_of_a_word_an_apostrophe_joins_to_a_suffix() -> None:
    v5, v4 = Analyzer(language="auto"), Analyzer(language="auto", version=4)
    assert v5.version == ANALYZER_VERSION == 5
    # Turkish case endings after a name: the name is a term of its own, the joined word kept whole
    assert v5.tokenize("Python'daki FastAPI'nin") == ["pythondaki", "python", "fastapinin", "fastapi"]
    assert v4.tokenize("Python'daki FastAPI'nin") == ["pythondaki", "fastapinin", "fastap", "inin"]
    assert v5.tokenize("get_db'yi") == ["get_dbyi", "get_db", "get", "db"]  # the head's identifier parts
    # English contractions, one-letter heads and elided articles are as before
    same = "the user's guide: don't, we'll, they're, o'clock, l'économie, dell'arte, O’Neil’s"
    assert v5.tokenize(same) == v4.tokenize(same)
    assert v4.version == 4 and v4.tokenize("API'ye") == ["apiy", "ap", "iye"]  # an index keeps its version


def test_a_turkish_query_for_a_name_finds_the_pages_that_inflect_it(tmp_path: Path) -> None:
    docs = [Document("a", "Python'daki sözlükleri birleştirmek için bu tekniği kullanabilirsiniz."),
            Document("b", "Veritabanı oturumunu her istekte yeniden oluşturun."),
            Document("c", "Bağımlılıklar tanımlanır ve kullanılır.")]
    with Index(tmp_path / "kb", embedder=FakeEmbedder(), show_progress=False) as index:
        index.add(docs)
        assert [h.doc_id for h in index.search("Python", k=3, mode="bm25")] == ["a"]  # version 4: none


def test_version_5_cuts_korean_words_into_bigrams_as_chinese_runs_are() -> None:
    v5, v4 = Analyzer(language="auto"), Analyzer(language="auto", version=4)
    # particles and endings attach to the word: "응답을" (the response, object) shares "응답" with "응답"
    assert v5.tokenize("응답을 사용한") == ["응답", "답을", "사용", "용한"]
    assert v4.tokenize("응답을 사용한") == ["응답을", "사용한"]
    assert v5.tokenize("model을 반환") == ["model", "을", "반환"]  # the Latin part stays a word
    assert v5.tokenize("東京の蜂") == v4.tokenize("東京の蜂")  # Chinese and Japanese as before
