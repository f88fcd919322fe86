"""Build non-English retrieval collections (BEIR folders) from real text checked out of public repositories.

    python benchmarks/language_sets.py --out /tmp/langsets --arabic-abstracts ARABIC_ABSTRACTS_CHECKOUT \\
        --docs react-ar:ar=AR_CHECKOUT --docs react-zh:zh=ZH_CHECKOUT --docs react-fr:fr=FR_CHECKOUT \\
        --docs react-ru:ru=RU_CHECKOUT --docs vue-ru:ru=VUE_RU_CHECKOUT --docs react-es:es=ES_CHECKOUT \\
        --docs react-it:it=IT_CHECKOUT --docs react-en:en=EN_CHECKOUT

Sources (nothing is committed: each run derives the documents from the checkouts given):

- ``--docs NAME:LANG=DIR``: a checkout of a translation of Markdown documentation, pages
  ``DIR/src/**/*.md``: ``reactjs/ar.react.dev``, ``reactjs/zh-hans.react.dev``, ``reactjs/fr.react.dev``,
  ``reactjs/es.react.dev``, ``reactjs/it.react.dev``, ``reactjs/ru.react.dev``, ``vuejs-translations/docs-ru``,
  and ``reactjs/react.dev`` as ``en`` (the original: what chunking costs in any language). Each ``##``
  section of a translated page is a document: its body, with code blocks, MDX tags and link targets
  removed, titled with the page's title. Its heading is the query, so the heading itself is not indexed;
  headings that occur twice in a language (``Usage``) and sections whose heading or body is not mostly
  in the language's script are left out.
- ``--arabic-abstracts DIR``: a checkout of ``nassersala/arabic-abstracts`` (arXiv abstracts and papers
  translated into Arabic). ``ar-abstracts``: each Arabic abstract is a document, untitled, and its paper's
  Arabic title the query. ``ar-sections``: each section of the translated papers (a few hundred to a few
  thousand words: many chunks each) is a document titled with its paper's Arabic title, and the
  section's Arabic heading (``القسم 2: الكشف الموحد`` without ``القسم 2:``) the query.

Each query has one relevant document (grade 1). Writes ``OUT/<name>/corpus.jsonl``, ``queries.jsonl`` and
``qrels/test.tsv``, readable by :func:`ragkit.evaluation.datasets.load_beir`; compare systems on them
with ``benchmarks/languages.py --sets OUT``.
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# The letters that make a text "in" a language: share of its letters in these ranges; Latin-script
# languages also need a few of their commonest words.
LATIN = "a-zàáâãäçèéêëìíîïñòóôõöùúûüÿœß"
SCRIPTS = {"ru": "\u0400-\u04ff", "uk": "\u0400-\u04ff", "zh": "\u4e00-\u9fff", "ar": "\u0600-\u06ff",
           "ja": "\u3040-\u30ff\u4e00-\u9fff", "ko": "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af",
           "hi": "\u0900-\u097f", "en": LATIN, "fr": LATIN, "es": LATIN, "de": LATIN, "it": LATIN,
           "pt": LATIN, "tr": LATIN + "ğış"}
MIN_SHARE = {"ru": 0.6, "uk": 0.6, "zh": 0.5, "ja": 0.5, "ko": 0.5, "hi": 0.5, "ar": 0.6}
SPACELESS = ("zh", "ja")  # sized in characters, not words
MARKS = {  # "en": the untranslated original, to tell what chunking costs in any language
    "en": re.compile(r"\b(the|and|is|to|of|you|that|with|for)\b"),
    "fr": re.compile(r"\b(les|des|est|une|dans|pour|avec|vous|qui)\b"),
    "es": re.compile(r"\b(los|las|del|una|para|con|que|por|es)\b"),
    "de": re.compile(r"\b(der|die|und|das|ist|nicht|mit|sie|ein)\b"),
    "it": re.compile(r"\b(il|della|che|per|una|non|sono|gli|di)\b"),
    "pt": re.compile(r"\b(os|das|uma|para|com|que|não|você|do)\b"),
    "tr": re.compile(r"\b(bir|ve|bu|için|ile|olarak|da|de|gibi)\b"),
}

_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.DOTALL | re.MULTILINE)
_ANCHOR = re.compile(r"\s*\{\s*(?:/\*.*?\*/|#[^}]*)\}")  # React's {/*id*/}, VitePress's {#id}, MkDocs' { #id }
_MKDOCS = re.compile(r"^(?:///.*|\{\*.*\*\})$", re.MULTILINE)  # FastAPI's admonition fences, code includes
_TAG = re.compile(r"</?[A-Za-z][^>\n]*>")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TITLE = re.compile(r"^(?:title:\s*[\"']?(.*?)[\"']?|# (.+?))\s*$", re.MULTILINE)


def script_share(text: str, language: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    inside = re.findall(f"[{SCRIPTS[language]}]", "".join(letters).lower())
    return len(inside) / len(letters)


def in_language(text: str, language: str) -> bool:
    if language in MARKS:  # Latin script: also some of the language's commonest words
        return script_share(text, language) >= 0.9 and len(MARKS[language].findall(text.lower())) >= 3
    return script_share(text, language) >= MIN_SHARE[language]


def plain(markdown: str) -> str:
    """Markdown prose without code blocks, MDX tags, link targets and blank runs."""
    text = _FENCE.sub("", markdown)
    text = _TAG.sub(" ", _LINK.sub(r"\1", _MKDOCS.sub("", text)))
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def doc_sections(root: Path, language: str) -> Iterator[tuple[str, str, str, str]]:
    """(doc id, page title, heading, body) of each translated ``##`` section of the pages under
    ``root/src`` (React, Vue), or under ``root`` where it has no ``src`` (FastAPI's ``docs/LANG/docs``)."""
    pages = root / "src" if (root / "src").is_dir() else root
    for page in sorted(p for p in pages.rglob("*.md") if not p.name.startswith("_")):
        source = page.read_text(encoding="utf-8")
        found = _TITLE.search(source)
        title = _ANCHOR.sub("", found.group(1) or found.group(2)).strip() if found else ""
        parts = re.split(r"^## (.+)$", _FENCE.sub("", source), flags=re.MULTILINE)
        for i in range(1, len(parts) - 1, 2):
            heading = _TAG.sub("", _ANCHOR.sub("", parts[i])).replace("`", "").strip()
            body = plain(parts[i + 1])
            if in_language(heading + " " + body, language) and _long_enough(body, language):
                rel = page.relative_to(root).with_suffix("")
                yield f"{rel}#{i // 2}", title, heading, body


def _long_enough(body: str, language: str) -> bool:
    return len(body) >= 150 if language in SPACELESS else len(body.split()) >= 30


def arabic_abstracts(root: Path) -> Iterator[tuple[str, str, str]]:
    """(doc id, Arabic title, Arabic abstract) of each paper in ``root/translations``."""
    for path in sorted((root / "translations").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        title = re.search(r"^## (.+)$", text, re.MULTILINE)
        body = re.search(r"^### الملخص العربي\s*\n(.*?)(?=^### |\Z)", text, re.MULTILINE | re.DOTALL)
        if title and body and in_language(title.group(1), "ar") and in_language(body.group(1), "ar"):
            yield path.stem, title.group(1).strip(), body.group(1).strip()


def arabic_sections(root: Path) -> Iterator[tuple[str, str, str, str]]:
    """(doc id, paper's Arabic title, section heading, Arabic section text) of the translated papers."""
    titles = {p.stem: t for p, t in _paper_titles(root)}
    for path in sorted((root / "full_papers").glob("*/[0-9][0-9]-*.md")):
        if path.name.startswith("00-"):
            continue  # the abstract: in ar-abstracts
        text = path.read_text(encoding="utf-8")
        heading = re.search(r"^## (.+)$", text, re.MULTILINE)
        body = re.search(r"^### النسخة العربية\s*\n(.*?)(?=^### (?:Translation|Quality|ملاحظات)|\Z)",
                         text, re.MULTILINE | re.DOTALL)
        if not heading or not body:
            continue
        query = re.sub(r"^القسم[^:]*:\s*", "", heading.group(1)).strip()
        body_text = re.sub(r"^#+\s*", "", body.group(1).strip(), flags=re.MULTILINE).replace("---", "").strip()
        if in_language(query, "ar") and in_language(body_text, "ar") and len(body_text.split()) >= 50:
            yield f"{path.parent.name}/{path.stem}", titles.get(path.parent.name, ""), query, body_text


def _paper_titles(root: Path) -> Iterator[tuple[Path, str]]:
    for path in (root / "translations").glob("*.md"):
        found = re.search(r"^## (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
        if found:
            yield path, found.group(1).strip()
    for path in (root / "full_papers").glob("*/00-abstract.md"):
        found = re.search(r"^## (?:الملخص:\s*)?(.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
        if found:
            yield path.parent, found.group(1).strip()


def unique_queries(rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """Rows whose query (normalised) is the query of no other row: a repeated heading has no one answer."""
    key = lambda q: unicodedata.normalize("NFKC", q).casefold().strip(" .:?!")
    counts = Counter(key(r[2]) for r in rows)
    return [r for r in rows if counts[key(r[2])] == 1]


def write_set(out: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """rows: (doc id, document title, query, document text); query i judges document i relevant."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as corpus, \
            (out / "queries.jsonl").open("w", encoding="utf-8") as queries, \
            (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for i, (doc_id, title, query, text) in enumerate(rows):
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
            queries.write(json.dumps({"_id": f"q{i}", "text": query}, ensure_ascii=False) + "\n")
            qrels.write(f"q{i}\t{doc_id}\t1\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--docs", action="append", default=[], metavar="NAME:LANG=DIR",
                        help=f"a Markdown docs translation checkout; LANG one of {sorted(SCRIPTS)}")
    parser.add_argument("--arabic-abstracts", type=Path, help="a checkout of nassersala/arabic-abstracts")
    args = parser.parse_args()
    for spec in args.docs:
        name, _, rest = spec.partition(":")
        language, _, folder = rest.partition("=")
        if language not in SCRIPTS or not folder or not name:
            parser.error(f"--docs {spec!r}: expected NAME:LANG=DIR with LANG one of {sorted(SCRIPTS)}")
        rows = unique_queries(list(doc_sections(Path(folder), language)))
        write_set(args.out / name, rows)
        print(f"{name}: {len(rows)} documents and queries")
    if args.arabic_abstracts:
        rows = unique_queries([(d, "", t, b) for d, t, b in arabic_abstracts(args.arabic_abstracts)])
        write_set(args.out / "ar-abstracts", rows)
        print(f"ar-abstracts: {len(rows)} documents and queries")
        rows = unique_queries(list(arabic_sections(args.arabic_abstracts)))
        write_set(args.out / "ar-sections", rows)
        print(f"ar-sections: {len(rows)} documents and queries")


if __name__ == "__main__":
    main()
