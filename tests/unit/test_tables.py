"""Tables stay tables: loaders write Markdown rows, chunking never splits a row, and a chunk that
starts inside a table carries the header row (embedded in front of its rows)."""

from __future__ import annotations

from ragkit.index import embedding_text
from ragkit.ingest.chunking import Chunker
from ragkit.ingest.formats.tables import markdown_table, table_spans
from ragkit.types import Document


def spreadsheet(rows: int = 200) -> str:
    table = markdown_table([("Hive", "Apiary", "Queen year", "Honey (kg)"),
                            *((f"Hive {i}", f"Site {i % 7}", 2020 + i % 5, i * 1.5) for i in range(1, rows + 1))])
    return "# Yields\n\nThe table below lists every hive.\n\n" + table + "\n\nThat is all."


def test_markdown_table_pads_rows_and_escapes_cells() -> None:
    text = markdown_table([("a", "b|c"), ("1\nline", None, 3.0)])
    assert text.split("\n") == ["| a | b\\|c |  |", "| --- | --- | --- |", "| 1 line |  | 3 |"]
    assert list(table_spans(text, 0, len(text))) == [(0, text.index("\n| 1"), len(text))]


def test_a_line_of_pipes_without_a_separator_is_not_a_table() -> None:
    text = "| not | a table |\n| just | text |"
    assert list(table_spans(text, 0, len(text))) == []


def test_no_chunk_splits_a_row_and_later_chunks_carry_the_header() -> None:
    doc = Document("yields.md", spreadsheet(), {"type": "markdown"})
    chunks = Chunker(chunk_size=96, overlap=8).split(doc)
    header = "| Hive | Apiary | Queen year | Honey (kg) |\n| --- | --- | --- | --- |"
    rows = {line for line in doc.text.split("\n") if line.startswith("| Hive ")}
    table_chunks = [c for c in chunks if "| Hive " in c.text]
    assert len(table_chunks) > 10
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        for line in chunk.text.split("\n"):
            assert not line.startswith("|") or line in rows or line in header.split("\n"), line  # whole rows only
    first, *rest = table_chunks
    assert first.text.startswith(header) and "table_header" not in first.metadata
    assert all(c.metadata["table_header"] == header for c in rest)
    hive_150 = next(c for c in rest if "| Hive 150 |" in c.text)
    assert embedding_text(hive_150).split("\n")[1:3] == header.split("\n")  # after the heading path
    seen = [line for c in table_chunks for line in c.text.split("\n") if line.startswith("| Hive ") and line[7].isdigit()]
    assert len(seen) == len(set(seen)) == 200  # every row once: no overlap inside a table


def test_a_table_that_fits_stays_whole_in_one_chunk_with_its_text() -> None:
    doc = Document("small.md", spreadsheet(rows=4), {"type": "markdown"})
    chunks = Chunker(chunk_size=128, overlap=16).split(doc)
    table = doc.text[doc.text.index("| Hive |") : doc.text.index("\n\nThat")]
    assert any(table in c.text for c in chunks) and not any("table_header" in c.metadata for c in chunks)


def test_slide_and_sheet_locations_reach_each_chunk() -> None:
    text = "Slide 1: Intro\n\nHello bees.\n\nSlide 2: Mites\n\nCount the mite drop."
    second = text.index("Slide 2")
    doc = Document("deck.pptx", text, {"type": "pptx", "outline": [[0, 1, "Slide 1: Intro"], [second, 1, "Slide 2: Mites"]],
                                       "locations": [[0, {"slide": 1}], [second, {"slide": 2}]]})
    chunks = Chunker(chunk_size=64, overlap=0).split(doc)
    assert [(c.metadata["slide"], c.metadata["headings"]) for c in chunks] == [
        (1, ["Slide 1: Intro"]), (2, ["Slide 2: Mites"])]
    assert "locations" not in chunks[0].metadata and "outline" not in chunks[0].metadata


def test_an_html_table_becomes_markdown_rows_under_its_header() -> None:
    from ragkit.ingest.loading import load_bytes

    html = (b"<h1>Yields</h1><table><thead><tr><th>Hive</th><th>Honey | kg</th></tr></thead><tbody>"
            b"<tr><td>Hive 1</td><td><p>12</p><div>spring</div></td></tr><tr><td>Hive 2</td><td></td></tr>"
            b"</tbody></table><p>After the table.</p>")
    text = load_bytes(html, "yields.html")[0].text
    assert text == ("# Yields\n\n| Hive | Honey \\| kg |\n| --- | --- |\n| Hive 1 | 12 spring |\n| Hive 2 | |\n\n"
                    "After the table.")
    assert list(table_spans(text, 0, len(text)))  # the chunker sees it as a table
