"""The values ragkit passes around: documents, chunks, search hits and sync reports.

All are frozen dataclasses: a value never changes after it is made, so a hit
can be logged, cached or shown to a user and still mean what it meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Document:
    """A unit of source text, usually one file (or one JSONL record).

    ``metadata`` holds what the loader knows: ``source`` (path relative to the
    indexed folder), ``title``, and for PDFs ``pages``, a list of
    ``[start_offset, page_number]`` pairs marking where each page begins in ``text``.
    """

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("Document.id must be a non-empty string")
        if not isinstance(self.text, str):
            raise TypeError(f"Document {self.id!r}: text must be str, not {type(self.text).__name__}")


@dataclass(frozen=True)
class Chunk:
    """A passage of a document, the unit that is indexed and retrieved.

    ``text == document.text[start:end]``. ``metadata`` carries ``source``,
    ``title``, ``headings`` (the Markdown heading path, outermost first) and
    ``page`` (1-based, PDFs only) where known, plus the document's own metadata.
    """

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"Chunk {self.id!r}: bad offsets start={self.start} end={self.end}")


@dataclass(frozen=True)
class Hit:
    """One search result, with the evidence for its rank.

    ``score`` is the final score in the mode searched (fused score for hybrid).
    ``bm25_score``/``bm25_rank`` and ``dense_score``/``dense_rank`` are each
    leg's raw score and 1-based rank among its candidates. Where a hybrid search's
    leg did not return the chunk, its rank is ``None`` and its score is the exact
    score that leg gives the chunk (what fusion used); both are ``None`` for a leg
    that was not searched. ``rerank_score`` is set when a cross-encoder
    reranked the results. ``association_score`` and ``associated_question`` are set when the
    chunk's document was lifted (0..1) because the query resembles a labelled or approved question, or
    demoted (below 0) because it resembles a question whose answer citing it got a thumbs-down
    (see :mod:`ragkit.retrieval.association`). ``relevance`` (0..1) is how likely the passage answers the query,
    on one scale for every collection (see :mod:`ragkit.retrieval.relevance`); ``None`` where a search
    had no calibrated evidence (a BM25-only search, a hit made by hand).
    """

    chunk_id: str
    doc_id: str
    text: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    rank: int = 0
    start: int = 0
    end: int = 0
    bm25_score: float | None = None
    bm25_rank: int | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    rerank_score: float | None = None
    association_score: float | None = None
    associated_question: str | None = None
    relevance: float | None = None

    @property
    def source(self) -> str | None:
        """The source path of the chunk's document, if it came from a file."""
        return self.metadata.get("source")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, plus ``source`` (as :attr:`source`) at the top level."""
        from dataclasses import asdict

        out = asdict(self)
        out["source"] = self.source
        return out


@dataclass(frozen=True)
class FailedFile:
    """A file a sync could not index, and why."""

    path: str
    reason: str


# Why a sync left a file (or a whole folder) out, and how its report names a group of them.
SKIP_LABELS: dict[str, tuple[str, str]] = {
    "image": ("image", "images"),
    "font": ("font", "fonts"),
    "site asset": ("site asset (css/js/map)", "site assets (css/js/map)"),
    "minified": ("minified file", "minified files"),
    "lock file": ("lock file", "lock files"),
    "unsupported": ("file of an unsupported type", "files of unsupported types"),
    "excluded": ("excluded by a pattern", "excluded by patterns"),
    "ignore file": ("ignored by .gitignore/.ragkitignore", "ignored by .gitignore/.ragkitignore"),
    "hidden": ("hidden", "hidden"),
    "metadata file": ("metadata file (.ragkitmeta.toml)", "metadata files (.ragkitmeta.toml)"),
    "outside link": ("symlink out of the folder", "symlinks out of the folder"),
    "unreadable": ("unreadable folder", "unreadable folders"),
}


@dataclass(frozen=True)
class SkippedFile:
    """A file (``path`` ending in ``/``: a folder, with everything in it) a sync did not read.

    ``reason`` is a key of :data:`SKIP_LABELS` ("image", "site asset", "excluded", ...); ``detail``
    says which rule (``--exclude 'drafts/**'``, ``docs/.gitignore``, ``.png``)."""

    path: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in SKIP_LABELS:
            raise ValueError(f"SkippedFile {self.path!r}: reason must be one of {sorted(SKIP_LABELS)}, "
                             f"got {self.reason!r}")


def skip_counts(skipped: tuple[SkippedFile, ...] | list[SkippedFile]) -> dict[str, int]:
    """How many were skipped for each reason, most first."""
    counts: dict[str, int] = {}
    for item in skipped:
        counts[item.reason] = counts.get(item.reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def skip_summary(skipped: tuple[SkippedFile, ...] | list[SkippedFile]) -> str:
    """``"skipped 243 images, 11 site assets (css/js/map), 2 hidden (1 folder)"``: a folder, skipped with
    everything in it, counts once."""
    parts = []
    for reason, n in skip_counts(skipped).items():
        folders = sum(item.path.endswith("/") for item in skipped if item.reason == reason)
        label = SKIP_LABELS[reason][0 if n == 1 else 1]
        parts.append(f"{n} {label}" + (f" ({folders} folder{'s' if folders != 1 else ''})" if folders else ""))
    return "skipped " + ", ".join(parts) if parts else ""


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`ragkit.Index.sync` did (or, with ``dry_run``, would do). Paths are relative to the
    synced folder; document ids and sources carry the folder's ``namespace`` in front, when it has one.

    ``skipped`` is every file and folder the listing left out and why; ``include``/``exclude`` are the
    patterns in effect (remembered for the folder), ``notes`` what changed about them. ``chunks_new``
    counts the chunks of the added, updated and renamed files; ``chunks_embedded`` those of them whose
    text was not in the embedding cache (in a dry run: would be embedded, in about ``estimated_seconds``,
    ``estimate_basis`` saying how that was estimated).
    """

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    failed: tuple[FailedFile, ...] = ()
    chunks_embedded: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    skipped: tuple[SkippedFile, ...] = ()
    namespace: str = ""
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    chunks_new: int = 0
    dry_run: bool = False
    estimated_seconds: float | None = None
    estimate_basis: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.renamed)

    def summary(self) -> str:
        """One line for humans, e.g. ``2 added, 1 updated, 0 renamed, 0 removed, 40 unchanged, 1 failed;
        3 chunks embedded, 90 in index (0.52s); skipped 12 images, 2 lock files``."""
        counts = (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.renamed)} renamed, "
                  f"{len(self.removed)} removed, {len(self.unchanged)} unchanged, {len(self.failed)} failed")
        if self.dry_run:
            line = (f"dry run, nothing written: would be {counts}; {self.chunks_new} chunks in changed files, "
                    f"{self.chunks_embedded} to embed")
            if self.estimated_seconds is not None:
                line += f" (about {_duration(self.estimated_seconds)}: {self.estimate_basis})"
        else:
            line = (counts + f"; {self.chunks_embedded} chunks embedded, {self.chunks_total} in index "
                    f"({self.seconds:.2f}s)")
        skipped = skip_summary(self.skipped)
        return line + ("; " + skipped if skipped else "")

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report as JSON-ready values (``renamed`` as ``{"from", "to"}`` pairs,
        ``skipped_counts`` by reason)."""
        from dataclasses import asdict

        out = asdict(self)
        out["renamed"] = [{"from": a, "to": b} for a, b in self.renamed]
        out["skipped_counts"] = skip_counts(self.skipped)
        out["summary"] = self.summary()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
