"""``language="auto"``: each word stemmed for its script (``ragkit.text.language``), English as before."""

from __future__ import annotations

import pytest

from ragkit import ConfigError
from ragkit.text.analysis import Analyzer
from ragkit.text.language import script_language


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
