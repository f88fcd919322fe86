"""A folder of MkDocs-style pages, indexed with the real model: no markup in titles, headings or
passages, front matter in the hits' metadata, and a question in words finds the identifier's section."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pdfutil import make_pdf

from ragkit import Index

PAGES = {
    "tutorial/cors.md": """---
title: CORS (Cross-Origin Resource Sharing)
tags: [middleware, security]
audience: backend
---

# CORS { #cors-cross-origin-resource-sharing }

A frontend in a browser that talks to a backend on another origin needs the backend's permission.

## Use `CORSMiddleware` { #use-corsmiddleware }

Use `CORSMiddleware` to allow cross-origin requests from the origins you list.

{* ../../docs_src/cors/tutorial001_py310.py hl[2,6:11,13:19] *}

/// note | Technical Details

You could also use `from starlette.middleware.cors import CORSMiddleware`.

///
""",
    "tutorial/cookies.md": """# Cookie Parameters { #cookie-parameters }

Declare cookie parameters the same way as query parameters.

!!! tip "Cookies are headers"
    The browser sends cookies in the `Cookie` header of each request.
""",
    "tutorial/headers.md": """# Header Parameters { #header-parameters }

=== "Python 3.10+"

    ```python
    --8<-- "docs_src/header_params/tutorial001.py"
    ```

Header names are converted from underscores to hyphens automatically.
""",
    "tutorial/testing.md": """# Testing { #testing }

Use the `TestClient` to call your application in tests without a running server.

???+ example
    Create a client and send a request to the path under test.
""",
    "tutorial/static.md": """# Static Files { #static-files }

Mount a folder of static files with `StaticFiles` so the application serves images and stylesheets.

<!-- TODO: link the deployment guide -->
""",
    "advanced/gzip.md": """# GZip compression { #gzip }

Compress large responses for clients that accept it, with a minimum size in bytes.

{!> ../../docs_src/advanced_middleware/tutorial003.py !}
""",
    "tutorial/security.md": """---
title: Security with OAuth2
---

# Security { .annotate }

Password flows use `OAuth2PasswordBearer` to read the bearer token from the request.

```{note} MyST note
:class: tip
Tokens expire; refresh them before they do.
```
""",
    "tutorial/background.md": """# Background Tasks { #background-tasks }

Run work after returning a response, such as sending an email notification.

.. note:: Background tasks run in the same process.
""",
    "deployment/docker.md": """# Docker { #docker }

Build a container image with the application and its dependencies; run it behind a proxy.

.. include:: ../snippets/docker-compose.rst
""",
}

MARKUP = ("{ #", "{#", "!!!", "???", "===", "--8<--", "{*", "{!", "///", "<!--", ":::", "```{", ".. note::",
          ".. include::", ".annotate", "title:", "tags:")


SYNCED: dict[str, Any] = {}  # the fixture's sync report


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("mkdocs")
    for rel, text in PAGES.items():
        (root / "docs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / rel).write_text(text, encoding="utf-8")
    # The site's assets beside the pages, and a PDF whose code sample has '#' comment lines.
    for rel in ("css/extra.css", "js/custom.js", "js/custom.js.map", "js/vendor.min.js", "package-lock.json"):
        (root / "docs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / rel).write_text("body { color: red } /* middleware cors */\n", encoding="utf-8")
    make_pdf(root / "docs" / "guide.pdf", [
        "Installing the MIME database\n# update-mime-database command. DO NOT EDIT!\nRun the installer as root.",
        "Page two explains uploads with UploadFile and size limits for multipart forms.",
    ])
    index = Index(root / "kb.ragkit", show_progress=False)
    report = index.sync(root / "docs")
    assert not report.failed and len(report.added) == len(PAGES) + 1
    SYNCED["report"] = report
    yield index
    index.close()


def test_site_assets_are_skipped_and_reported_by_type(docs_index: Index) -> None:
    report = SYNCED["report"]
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons == {"css/extra.css": "site asset", "js/custom.js": "site asset", "js/custom.js.map": "site asset",
                       "js/vendor.min.js": "minified", "package-lock.json": "lock file"}, reasons
    summary = report.summary()
    assert "3 site assets (css/js/map)" in summary and "1 minified file" in summary and "1 lock file" in summary
    assert not docs_index.search("color red", k=20, mode="bm25", filters={"source": "css/extra.css"})


def test_a_pdf_comment_line_is_text_not_a_heading(docs_index: Index) -> None:
    hits = [h for h in docs_index.search("upload size limits multipart", k=50, mode="bm25") if h.source == "guide.pdf"]
    assert hits
    for hit in hits:
        assert not any("DO NOT EDIT" in h for h in hit.metadata.get("headings", [])), hit.metadata
        assert "DO NOT EDIT" not in str(hit.metadata["title"])


def test_a_question_in_words_finds_the_identifiers_section(docs_index: Index) -> None:
    hits = docs_index.search("how do I add CORS middleware", k=3)
    assert any(h.source == "tutorial/cors.md" and "CORSMiddleware" in h.text for h in hits), [h.source for h in hits]


def test_titles_headings_and_passages_hold_no_markup(docs_index: Index) -> None:
    hits = docs_index.search("documentation", k=100, mode="dense")  # every chunk
    assert {h.source for h in hits} == set(PAGES) | {"guide.pdf"}
    for hit in hits:
        shown = [hit.text, str(hit.metadata["title"]), *hit.metadata["headings"]]
        assert not [m for m in MARKUP for part in shown if m in part], (hit.chunk_id, shown)
    titles = {h.source: h.metadata["title"] for h in hits}
    assert titles["tutorial/cors.md"] == "CORS (Cross-Origin Resource Sharing)"  # from the front matter
    assert titles["tutorial/cookies.md"] == "Cookie Parameters"  # from the heading, anchor removed
    assert titles["tutorial/security.md"] == "Security with OAuth2"


def test_front_matter_keys_are_hit_metadata_and_filterable(docs_index: Index) -> None:
    hits = docs_index.search("cross-origin requests", k=3, filters={"audience": "backend"})
    assert hits and all(h.source == "tutorial/cors.md" for h in hits)
    assert hits[0].metadata["tags"] == ["middleware", "security"]
