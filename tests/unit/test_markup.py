"""ragkit.ingest.markup and .frontmatter: site markup leaves Markdown's text, code stays as written,
front matter becomes metadata; through the loader and chunker, offsets still point into the text."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from ragkit.errors import LoadError
from ragkit.ingest.chunking import Chunker
from ragkit.ingest.frontmatter import split_front_matter
from ragkit.ingest.loading import load_file
from ragkit.ingest.markup import clean_heading, read_markdown, strip_markup
from ragkit.ingest.sections import markdown_blocks
from ragkit.text.analysis import Analyzer


def lines(text: str) -> list[str]:
    return [line for line in strip_markup(text).split("\n") if line.strip()]


# --------------------------------------------------------------------------- headings, attributes


@pytest.mark.parametrize("heading", ["## Title { #some-id }", "## Title {#id .class}", "## Title {: #id }",
                                     "## Title {#id data-x=\"1\"}", "## Title <small>{ #x }</small>"])
def test_heading_anchors_and_attribute_lists_leave_the_heading(heading: str) -> None:
    assert strip_markup(heading) == "## Title"
    assert clean_heading(heading[3:]) == "Title"


def test_attribute_lists_after_links_images_and_alone_are_removed() -> None:
    text = "[Go](x.md){ .md-button .md-button--primary } ![Logo](l.png){ width=\"300\" }\n\n{ .annotate }\n\nEnd."
    assert lines(text) == ["[Go](x.md) ![Logo](l.png)", "End."]


def test_braces_that_are_not_attribute_lists_stay() -> None:
    assert strip_markup('Set {"key": 1} or {name} in the template.') == 'Set {"key": 1} or {name} in the template.'


def test_chunk_headings_of_raw_markdown_are_clean_too() -> None:
    blocks = list(markdown_blocks("# Guide { #guide }\n\ntext\n\n## Step {: .x }\n\nmore\n"))
    assert {b[1] for b in blocks} == {("Guide",), ("Guide", "Step")}


# --------------------------------------------------------------------------- admonitions, tabs, blocks


def test_an_admonition_keeps_its_title_and_dedented_body() -> None:
    text = '!!! note "Dependencies with yield"\n    The body, **bold**.\n\n    Second paragraph.\n\nAfter.'
    assert lines(text) == ["Dependencies with yield", "The body, **bold**.", "Second paragraph.", "After."]


@pytest.mark.parametrize("marker", ["??? tip", "???+ tip", "!!! warning", '!!! note ""', "!!! note inline end"])
def test_an_admonition_without_a_title_leaves_only_its_body(marker: str) -> None:
    assert lines(f"{marker}\n    Tip body.\n") == ["Tip body."]


def test_a_code_fence_inside_an_admonition_is_kept_whole_and_dedented() -> None:
    text = "!!! example\n    ```python\n    # a comment, not a heading\n    app = FastAPI()\n    ```\n"
    assert strip_markup(text) == "```python\n# a comment, not a heading\napp = FastAPI()\n```\n"
    assert [b[1] for b in markdown_blocks(strip_markup(text))] == [()]


def test_content_tabs_keep_their_label_only_when_they_have_a_body() -> None:
    text = '=== "Python"\n\n    ```python\n    --8<-- "docs_src/app.py"\n    ```\n\n=== "pip"\n\n    Run `pip install x`.\n'
    assert lines(text) == ["pip", "Run `pip install x`."]


def test_pymdownx_blocks_drop_markers_and_options_and_keep_titles() -> None:
    text = ("/// note | Technical Details\n    type: warning\n\nUse `from starlette import x`.\n\n///\n\n"
            "//// tab | Python 3.10+\n\n/// tip\nInner tip.\n///\n\n////\n\nAfter.")
    assert lines(text) == ["Technical Details", "Use `from starlette import x`.", "Python 3.10+", "Inner tip.",
                           "After."]


# --------------------------------------------------------------------------- includes


@pytest.mark.parametrize("directive", ['--8<-- "docs/snippet.md"', "--8<-- 'x.md:section'",
                                       "{!> ../../docs_src/x.py !}", "{! ../README.md !}",
                                       "{* ../../docs_src/cors/tutorial001.py hl[2,6:11] *}",
                                       ".. include:: other.rst", ".. literalinclude:: code.py\n   :lines: 1-3"])
def test_include_directives_leave_nothing(directive: str) -> None:
    assert lines(f"Before.\n\n{directive}\n\nAfter.") == ["Before.", "After."]


def test_a_block_of_snippet_files_leaves_nothing() -> None:
    assert lines("Before.\n\n--8<--\na.md\nb.md\n--8<--\n\nAfter.") == ["Before.", "After."]


def test_include_lines_leave_a_code_fence_the_rest_stays_and_an_emptied_fence_goes() -> None:
    text = '```python\n--8<-- "a.py"\nprint(1)\n```\n\n```python\n{* ../x.py *}\n```\n\nEnd.'
    assert lines(text) == ["```python", "print(1)", "```", "End."]


# --------------------------------------------------------------------------- MyST and Sphinx


def test_myst_directive_fences_keep_title_and_body_without_options() -> None:
    text = "```{note} A title\n:class: tip\nMyST body.\n```\n\n```{include} ../README.md\n:start-after: x\n```\n"
    assert lines(text) == ["A title", "MyST body."]


def test_colon_fences_and_nested_directives() -> None:
    text = "::::{tab-set}\n:::{tab-item} Linux\nRun it.\n:::\n::::\n\n:::{warning}\nCareful.\n:::\n\nEnd."
    assert lines(text) == ["Linux", "Run it.", "Careful.", "End."]


def test_a_code_directive_becomes_a_code_fence() -> None:
    assert lines("```{code-block} python\n:linenos:\nx = 1\n```") == ["```python", "x = 1", "```"]
    assert lines(".. code-block:: python\n\n   x = 1\n") == ["```python", "x = 1", "```"]


def test_rst_directives_keep_their_text() -> None:
    text = ".. note:: Inline start\n   and the indented body.\n\n.. toctree::\n   :maxdepth: 2\n\n   intro\n\nEnd."
    assert lines(text) == ["Inline start", "and the indented body.", "End."]


def test_roles_targets_and_mkdocstrings_lines() -> None:
    text = ("(install-label)=\n## Install\n\nSee {ref}`the guide <guide-label>`, {py:class}`~pkg.mod.HTTPException`"
            " and {doc}`intro`.\n\n::: fastapi.status\n    options:\n      show_root_heading: true\n\nEnd.")
    assert lines(text) == ["## Install", "See the guide, `HTTPException` and intro.", "End."]


# --------------------------------------------------------------------------- GitHub Markdown, HTML


def test_html_comments_tags_icons_and_alerts() -> None:
    text = ("Intro <!-- inline --> text with <dfn title=\"a thing\">origin</dfn>.\n\n<!--\nmany\nlines\n-->\n"
            "Line<br>break :material-check: done.\n\n> [!NOTE]\n> Alert body.")
    assert lines(text) == ["Intro  text with origin.", "Line break  done.", ">", "> Alert body."]


def test_only_html_elements_are_tags_and_script_or_style_blocks_go_whole() -> None:
    assert lines("A List<String> and <your-token>.") == ["A List<String> and <your-token>."]
    assert lines("<style>\n.x { color: red }\n</style>\n<script src=\"a.js\"></script>\nText.") == ["Text."]


def test_code_is_code_fences_and_spans_are_kept_exactly() -> None:
    fence = '```md\n!!! note "x"\n    body\n## T { #id }\n<!-- c -->\n.. note:: y\n=== "Tab"\n```'
    assert strip_markup(fence) == fence
    span = "Write `## T { #id }` or `<!-- c -->` or ``{* x *}``."
    assert strip_markup(span) == span


def test_a_terminal_transcript_loses_its_html_colouring() -> None:
    text = '<div class="termy">\n\n```console\n$ <font color="#4E9A06">fastapi</font> dev &apos;x&apos;\n```\n\n</div>'
    assert lines(text) == ["```console", "$ fastapi dev 'x'", "```"]


def test_an_unclosed_fence_runs_to_the_end_as_code() -> None:
    assert strip_markup("Text.\n\n```\n!!! note\n    body") == "Text.\n\n```\n!!! note\n    body"


# --------------------------------------------------------------------------- front matter


def test_yaml_front_matter_becomes_metadata_and_its_title_the_title() -> None:
    text = ("---\ntitle: CORS setup\ntags: [web, security]\ndate: 2024-05-01\nweight: 3\ndraft: false\n"
            "nested: {a: 1}\nsource: evil.md\n---\n# Heading\n\nBody.\n")
    body, meta = read_markdown(text)[0], read_markdown(text)[1]
    assert body == "# Heading\n\nBody.\n"
    assert meta == {"title": "CORS setup", "tags": ["web", "security"], "date": "2024-05-01", "weight": 3,
                    "draft": False}


def test_toml_front_matter_and_the_yaml_end_marker() -> None:
    assert split_front_matter('+++\ntitle = "T"\ntags = ["a"]\n+++\nBody') == ({"title": "T", "tags": ["a"]}, "Body")
    assert split_front_matter("---\nauthor: me\n...\nBody") == ({"author": "me"}, "Body")


@pytest.mark.parametrize("text", ["---\n\nJust a rule between paragraphs.\n\n---\nBody", "---\nnever closed\nBody",
                                  "Body first\n---\nkey: v\n---\n"])
def test_what_is_not_front_matter_stays_text(text: str) -> None:
    assert split_front_matter(text) == ({}, text)


def test_invalid_yaml_stays_text_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = "---\nkey: [unclosed\n---\nBody"
    with caplog.at_level(logging.WARNING):
        assert split_front_matter(text, "bad.md") == ({}, text)
    assert "bad.md" in caplog.text and "front matter" in caplog.text


# --------------------------------------------------------------------------- through loader and chunker


PAGE = """---
title: Middleware guide
tags: [middleware, cors]
---

# Middleware { #middleware }

!!! tip "Add it early"
    Use `CORSMiddleware` before the routes.

{* ../../docs_src/cors/tutorial001.py hl[2] *}

## Options {: #options .annotate }

<!-- editors: keep this short -->
Allowed origins are a list.
"""


def test_a_markdown_file_loads_clean_with_its_front_matter_as_metadata(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text(PAGE, encoding="utf-8")
    (doc,) = load_file(tmp_path / "guide.md", "guide.md")
    assert doc.metadata["title"] == "Middleware guide" and doc.metadata["tags"] == ["middleware", "cors"]
    assert doc.metadata["source"] == "guide.md" and doc.metadata["type"] == "markdown"
    for leftover in ("{", "!!!", "<!--", "---", "docs_src", "tip"):
        assert leftover not in doc.text
    chunks = Chunker(chunk_size=20, overlap=0).split(doc)
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)  # citations point into the stored text
    assert {tuple(c.metadata["headings"]) for c in chunks} == {("Middleware",), ("Middleware", "Options")}
    terms = set(Analyzer().tokenize_many([c.text for c in chunks])[0]) | set(Analyzer().tokenize(chunks[-1].text))
    assert not terms & {"annotat", "id", "8", "docs_src", "hl", "tutorial001", "py", "editor"}


def test_a_file_of_only_front_matter_is_a_load_error_and_text_files_keep_markup(tmp_path: Path) -> None:
    (tmp_path / "redirect.md").write_text("---\nredirect: /new/\n---\n<!-- moved -->\n", encoding="utf-8")
    with pytest.raises(LoadError, match="no text besides front matter"):
        load_file(tmp_path / "redirect.md", "redirect.md")
    (tmp_path / "notes.txt").write_text("!!! note\n    kept as written\n", encoding="utf-8")
    assert load_file(tmp_path / "notes.txt", "notes.txt")[0].text.startswith("!!! note")


def test_deep_nesting_and_long_lines_cost_little() -> None:
    nested = "".join("    " * i + "!!! note\n" for i in range(200)) + "    " * 200 + "deep body\n"
    started = time.perf_counter()
    assert "deep body" in strip_markup(nested)
    strip_markup("{ .a " * 50_000 + "\n" + "<a " * 50_000 + "\n" + "::: x.y\n" * 5_000)
    assert time.perf_counter() - started < 5
