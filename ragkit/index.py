"""``ragkit.Index``: one persistent hybrid index (BM25 + dense), kept in step with folders.

>>> index = ragkit.Index("kb.ragkit")                       # doctest: +SKIP
>>> report = index.sync("docs/")                            # doctest: +SKIP
>>> index.search("how do I treat varroa mites?", k=5)       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ragkit.retrieval.adapter import QueryAdapter
from ragkit.retrieval.association import QueryAssociations
from ragkit.retrieval import competence
from ragkit.text.analysis import ANALYZER_VERSION, Analyzer
from ragkit.storage.base import CACHE_MAX_AGE_DAYS, CACHE_MAX_BYTES, Changes, PreparedDocument
from ragkit.ingest.chunking import Chunker, at_most_estimate, embedding_windows, overlaps
from ragkit.text.tokens import approximate_token_count, fragmentation
from ragkit.ingest.folders import FolderSettings, resolve_folder
from ragkit.ingest.sync import FolderPlan, dedupe_documents, move_all, namespaced, plan_sync
from ragkit.storage.dense import DENSE_KINDS
from ragkit.text import embedding as text_embedding
from ragkit.text.embedding import DEFAULT_MODEL, Embedder, TextEmbedder
from ragkit.text.embedders import records as embedder_records
from ragkit.errors import ConfigError, EmbedderMismatchError, ModelMismatchError
from ragkit.storage.filters import Filters
from ragkit.storage.bm25 import BM25Params
from ragkit.ingest.files import scan_folder
from ragkit.ingest.limits import DEFAULT_LIMITS, ParseLimits
from ragkit.ingest.worker import load_bounded
from ragkit.progress import counter, progress
from ragkit.storage.local.store import FORMAT_VERSION
from ragkit.storage.util import batches
from ragkit.types import Chunk, Document, Hit, SyncReport

from ragkit.retrieval.retriever import HybridRetriever
from ragkit.retrieval.settings import (
    UNSET, FusionMethod, Grouping, Normalization, RetrievalSettings, SearchMode, Unset, given_settings,
)
from ragkit.retrieval.source import LearnedState, QueryEncoder
from ragkit.storage.base import SearchView
from ragkit.storage.location import open_backend

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    """Settings fixed when an index is created and stored in it."""

    model: str = DEFAULT_MODEL
    dimension: int | None = None
    chunk_size: int = 256
    chunk_overlap: int = 32
    # "auto": each word stemmed for its script (ragkit.text.language); English words exactly as "english"
    language: str = "auto"
    stopwords: bool = True
    stemming: bool = True
    analyzer_version: int = ANALYZER_VERSION  # how text becomes BM25 terms (ragkit.text.analysis)
    # what a chunk's budget counts: "model" tokens, or the smaller of those and a script-aware estimate
    # ("model-or-estimate", ragkit.ingest.chunking.at_most_estimate), so chunks of Arabic do not collapse
    chunk_counter: str = "model-or-estimate"
    bm25_k1: float = BM25Params.k1
    bm25_b: float = BM25Params.b
    bm25_idf: str = BM25Params.idf
    bm25_document_weight: float = BM25Params.document_weight  # the whole document's share of a chunk's BM25
    dense_index: str = "flat"
    format_version: int = FORMAT_VERSION
    retrieval: dict[str, Any] | None = None  # fusion settings saved by `ragkit tune`
    query_adapter: dict[str, Any] | None = None  # saved by `ragkit tune --adapter` (see ragkit.adapter)
    query_associations: dict[str, Any] | None = None  # saved by `ragkit tune --associate` (ragkit.association)
    embedder: dict[str, Any] | None = None  # kind, name, prompts, runtime, precision (text/embedders/records.py)
    folders: dict[str, Any] | None = None  # folder path -> its namespace and patterns (ragkit.ingest.folders)
    embedding_rate: dict[str, Any] | None = None  # the last measured chunks/s, for a dry run's estimate
    # the model's tokens and the script-aware estimate summed over embedded chunks (ragkit.text.tokens.fragmentation)
    fragmentation: dict[str, Any] | None = None
    # the dense leg's known-item self-test (ragkit.retrieval.competence.DenseCompetence), redone as the index grows
    dense_competence: dict[str, Any] | None = None

    @property
    def analyzer(self) -> Analyzer:
        return Analyzer(language=self.language, stopwords=self.stopwords, stemming=self.stemming,
                        version=self.analyzer_version)

    @property
    def bm25(self) -> BM25Params:
        return BM25Params(k1=self.bm25_k1, b=self.bm25_b, idf=self.bm25_idf,  # type: ignore[arg-type]
                          document_weight=self.bm25_document_weight)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IndexConfig":
        known = {f.name for f in fields(cls)}
        # stored before analysis had versions (or a language default): queries stay as built
        data = {"analyzer_version": 1, "language": "english", "chunk_counter": "model", **data}
        return cls(**{k: v for k, v in data.items() if k in known})


# Chunks per encode call under the progress bar (the model's own batch: on a CPU at a few chunks/s the bar
# still moves every few seconds), and the rate a sync records (for a dry run's estimate) only from this
# many chunks; a dry run with no recorded rate measures one on a sample this large.
_EMBED_BATCH = 32
_RATE_MIN_CHUNKS = 64
_RATE_SAMPLE = 64

# Options that define how text becomes index terms and vectors: changing them needs a rebuild.
_FIXED_OPTIONS = ("chunk_size", "chunk_overlap", "language", "stopwords", "stemming", "dense_index")


class Index:
    """A persistent hybrid index in a directory: create it, sync folders into it, search it.

    ``Index(path)`` opens the index at ``path`` or creates it. ``model`` is the
    sentence-transformers model (name or local path); opening an existing index
    with another model raises :class:`~ragkit.errors.ModelMismatchError` and
    changes nothing. ``embedder`` replaces the sentence-transformers model with any
    :class:`~ragkit.text.embedding.TextEmbedder` (its ``name`` is the index's model). Other
    options apply when the index is created.

    >>> index = Index("kb.ragkit")                          # doctest: +SKIP
    >>> index.sync("samples/docs").summary()                # doctest: +SKIP
    '34 added, 0 updated, ...'
    >>> hits = index.search("when do bees swarm?", k=3)     # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        model: str | None = None,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        language: str | None = None,
        stopwords: bool | None = None,
        stemming: bool | None = None,
        dense_index: str | None = None,
        bm25_k1: float | None = None,
        bm25_b: float | None = None,
        bm25_idf: str | None = None,
        bm25_document_weight: float | None = None,
        create: bool = True,
        token: str | None = None,
        lock_timeout: float | None = 0.0,
        show_progress: bool | None = None,
        device: str | None = None,
        embedder: TextEmbedder | None = None,
    ) -> None:
        if embedder is not None:
            if model is not None and model != embedder.name:
                raise ConfigError(f"model={model!r} and embedder={embedder.name!r} disagree; give one of them")
            model = embedder.name
        options = {
            "model": model, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "language": language,
            "stopwords": stopwords, "stemming": stemming, "dense_index": dense_index,
            "bm25_k1": bm25_k1, "bm25_b": bm25_b, "bm25_idf": bm25_idf,
            "bm25_document_weight": bm25_document_weight,
        }
        given = {k: v for k, v in options.items() if v is not None}
        if "dense_index" in given and given["dense_index"] not in DENSE_KINDS:
            raise ConfigError(f"dense_index must be one of {DENSE_KINDS}, got {given['dense_index']!r}")
        self.path = Path(path) if "://" not in str(path) else path  # type: ignore[assignment]
        self.backend = open_backend(path, create=create, token=token)
        try:
            self._configure(given)
        except BaseException:
            self.backend.close()  # a rejected open must not leave the database open
            raise
        self.lock_timeout = lock_timeout
        self.show_progress = show_progress
        self.embedder: TextEmbedder = embedder or self._default_embedder(device)
        embedder_records.adopt(self.config.embedder, self.embedder, self.path)  # stored prompts, precision
        self.analyzer = self.config.analyzer
        self._chunker: Chunker | None = None
        self._encoder = QueryEncoder(self.analyzer, embedder_records.QuerySide(self.embedder))
        self._decoded: dict[str, tuple[dict[str, Any], Any]] = {}  # config field -> (stored, decoded)
        self._generation = getattr(self.backend, "generation", 0)

    def _default_embedder(self, device: str | None) -> TextEmbedder:
        stored = self.config.embedder or {}
        if stored.get("kind") in embedder_records.NOT_LOCAL:
            return embedder_records.from_record(stored)  # a service rebuilt from its URL, or a clear error
        return Embedder(self.config.model, device=device)

    def _configure(self, given: dict[str, Any]) -> None:
        if given.get("bm25_document_weight") and not getattr(self.backend, "document_bm25", True):
            raise ConfigError(f"index {self.path}: this backend scores BM25 per chunk only; "
                              "give bm25_document_weight=0 (or leave it out)")  # before anything is written
        stored = self.backend.get_config()
        self._unsaved = stored is None  # a new index's config is stored by its first write (_save_new)
        if stored is None:
            config = IndexConfig(**given)
            config.analyzer  # validate the language and BM25 constants before anything is written
            config.bm25
            # counted from the first chunk (an index stored before this has None: not counted until rebuilt)
            self.config = replace(config, dimension=None, fragmentation={"model_tokens": 0, "estimated_tokens": 0})
        else:
            self.config = IndexConfig.from_dict(stored)
            self._check_compatible(given)
            # BM25's constants apply at query time to stored term frequencies: they can change any time.
            bm25 = {k: v for k, v in given.items() if k.startswith("bm25_") and v != getattr(self.config, k)}
            if bm25:
                self.config = replace(self.config, **bm25)
                self.config.bm25  # validate before storing
                if not self._unsaved:  # else stored with the first write, once the new model has loaded
                    self.backend.set_config(self.config.to_dict())
        if not getattr(self.backend, "document_bm25", True) and self.config.bm25_document_weight:
            self.config = replace(self.config, bm25_document_weight=0.0)  # what its searches do

    def _check_compatible(self, given: dict[str, Any]) -> None:
        model = given.get("model")
        if model is not None and model != self.config.model and self.backend.counts()["chunks"] == 0:
            # nothing was embedded with the stored model (e.g. a mistyped --model that never loaded):
            # take the new one, stored by the first write once it has loaded
            logger.info("index %s holds no chunks; its model changes from %r to %r", self.path,
                        self.config.model, model)
            self.config, self._unsaved = replace(self.config, model=model, dimension=None, embedder=None), True
        elif model is not None and model != self.config.model:
            raise EmbedderMismatchError(
                f"index {self.path} was built with embedding model {self.config.model!r}, not {model!r}; "
                "open it without model= (or with the embedder that built it) or rebuild it into a new directory"
            )
        for option in _FIXED_OPTIONS:
            if option in given and given[option] != getattr(self.config, option):
                raise ConfigError(
                    f"index {self.path} was built with {option}={getattr(self.config, option)!r}, not "
                    f"{given[option]!r}; rebuild the index to change it"
                )

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, model={self.config.model!r})"

    # -- building ---------------------------------------------------------------------------
    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            limit, counter = self.embedder.max_seq_length, self.embedder.token_counter()
            self._chunker = Chunker(
                chunk_size=min(self.config.chunk_size, limit - 2),  # room for [CLS] and [SEP]
                overlap=self.config.chunk_overlap,
                count_tokens=counter if self.config.chunk_counter == "model" else at_most_estimate(counter),
                max_tokens=limit - 2,
            )
        return self._chunker

    def _progress(self, show: bool | None) -> bool:
        if show is not None:
            return show
        return self.show_progress if self.show_progress is not None else False

    def sync(
        self,
        folder: str | os.PathLike[str],
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        json_text_field: str = "text",
        max_file_bytes: int = 50_000_000,
        include_hidden: bool = False,
        show_progress: bool | None = None,
        shard: tuple[int, int] | None = None,
        max_chars: int = DEFAULT_LIMITS.max_chars,
        parse_seconds: float | None = DEFAULT_LIMITS.seconds,
        page_seconds: float | None = DEFAULT_LIMITS.page_seconds,
        parse_memory: int | None = DEFAULT_LIMITS.memory_bytes,
        ignore_files: bool | None = None,
        reset_patterns: bool = False,
        prefix: str | None = None,
        dry_run: bool = False,
    ) -> SyncReport:
        """Make the index hold exactly the loadable files of ``folder``: add, update, rename, remove.

        A file whose size and mtime are unchanged is not read; one whose content hash is unchanged is
        not re-chunked; a chunk whose text is unchanged is not re-embedded. A file that fails to load is
        reported and keeps its previously indexed version. The report also lists every file skipped and
        why (images, site assets, lock files, patterns, ignore files; see :mod:`ragkit.ingest.ignore`).

        ``include``/``exclude`` (gitignore-style patterns) and ``ignore_files`` (read ``.gitignore`` and
        ``.ragkitignore``, default on) are remembered for the folder: ``None`` uses what it has, a list
        replaces it, ``reset_patterns`` forgets both. ``prefix`` names the folder's namespace, put in
        front of its document ids and sources (see :mod:`ragkit.ingest.folders`; default: none for the
        first folder of an index, the folder's name for the others). ``dry_run`` writes nothing and
        reports what would change, the chunks to embed and an estimate of the time.

        ``shard=(i, n)`` lets ``n`` workers share one sync: this call adds and updates only the files
        whose path hashes to ``i``, and removes nothing; a final sync without ``shard`` removes
        deleted files.

        Each file is bounded on its own: ``max_chars`` characters of text, and PDFs and files of 1 MB
        or more are parsed in a worker process killed after ``parse_seconds`` (``page_seconds`` per
        PDF page) or at ``parse_memory`` bytes; a file over a limit is reported as failed ("too
        complex: ..." or "text too long: ...") and the sync goes on. ``None`` lifts a limit.
        """
        limits = ParseLimits(max_chars=max_chars, seconds=parse_seconds, page_seconds=page_seconds,
                             memory_bytes=parse_memory)
        started = time.perf_counter()
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"sync: {root} is not a folder")
        root_key = str(root.resolve())
        self._load_model_if_new()
        options = {"include": include, "exclude": exclude, "ignore_files": ignore_files,
                   "reset_patterns": reset_patterns, "prefix": prefix}

        def load(data: bytes, path: Path, rel: str) -> list[Document]:
            return load_bounded(data, rel, path.name, limits, json_text_field=json_text_field,
                                max_file_bytes=max_file_bytes)

        def plan() -> FolderPlan:
            return self._plan_folder(root, root_key, options, load, include_hidden=include_hidden, shard=shard,
                                     max_file_bytes=max_file_bytes, show=self._progress(show_progress))

        if dry_run:  # no writer lock: a dry run must not even create the index folder
            return self._dry_run(plan(), started, show_progress)
        with self.backend.writer_lock(self.lock_timeout):
            self._follow_rebuild()
            folder_plan = plan()
            self._save_new()
            self._remember_folder(root_key, folder_plan.settings)
            documents = [d for d, _ in folder_plan.plan.documents]
            prepared, embedded = self._prepare(documents, root_key, show_progress)
            changes = Changes(
                remove_doc_ids=tuple(folder_plan.plan.remove_doc_ids), add=tuple(prepared),
                upsert_files=tuple((root_key, e) for e in folder_plan.plan.upsert_files),
                remove_files=tuple((root_key, p) for p in folder_plan.plan.remove_files),
            )
            if not changes.empty:
                self.backend.apply(changes)
                self._measure_competence()
        report = folder_plan.report(
            chunks_embedded=embedded, chunks_total=self.backend.counts()["chunks"],
            chunks_new=sum(len(p.chunks) for p in prepared), seconds=time.perf_counter() - started,
        )
        logger.info("sync %s: %s", folder, report.summary())
        return report

    def folder_settings(self, folder: str | os.PathLike[str]) -> FolderSettings | None:
        """What the index remembers about a synced folder (namespace, patterns), or ``None``."""
        stored = self._stored_folders().get(str(Path(folder).resolve()))
        return None if stored is None else FolderSettings.from_dict(stored)

    def _stored_folders(self) -> dict[str, Any]:
        """The folders' settings as stored now: another process may have synced a folder since this
        index was opened."""
        stored = self.backend.get_config()
        return dict((stored.get("folders") if stored else self.config.folders) or {})

    def _plan_folder(
        self, root: Path, root_key: str, options: dict[str, Any], load: Callable[[bytes, Path, str], list[Document]],
        *, include_hidden: bool, shard: tuple[int, int] | None, max_file_bytes: int, show: bool,
    ) -> FolderPlan:
        """The folder's settings (remembered ones, or the options that replace them), its listing, and the
        plan: read-only, so a dry run and a sync plan alike."""
        folders = {k: FolderSettings.from_dict(v) for k, v in self._stored_folders().items()}
        manifest = self.backend.manifest(root_key)
        taken = self._namespaces_in_use(folders, root_key)
        settings, notes = resolve_folder(
            folders.get(root_key), folder_name=Path(root_key).name, synced_before=bool(manifest),
            first_folder=not taken, taken=taken, **options,
        )
        stored = folders.get(root_key)
        moving = bool(manifest) and (stored.namespace if stored else "") != settings.namespace
        if moving and shard is not None:
            raise ConfigError("a new prefix moves every document of the folder: sync it without shard first")
        listing = scan_folder(root, include=settings.include, exclude=settings.exclude,
                              include_hidden=include_hidden, ignore_files=settings.ignore_files)
        plan = plan_sync(
            root, {} if moving else manifest, files=listing.files, max_file_bytes=max_file_bytes,
            load_data=lambda data, path, rel: namespaced(load(data, path, rel), settings.namespace),
            existing=self.backend.document_roots, shard=shard, show_progress=show,
        )
        if moving:
            move_all(plan, manifest)
        return FolderPlan(plan, settings, notes, listing.skipped)

    def _namespaces_in_use(self, folders: dict[str, FolderSettings], root_key: str) -> dict[str, str]:
        """Namespace -> folder, of the other folders that still hold files here (a folder whose files went
        elsewhere, e.g. its index and folder were copied together and re-pointed, no longer claims one)."""
        return {f.namespace: k for k, f in folders.items() if k != root_key and self.backend.manifest(k)}

    def _remember_folder(self, root_key: str, settings: FolderSettings) -> None:
        folders = self._stored_folders()
        if folders.get(root_key) != settings.to_dict():
            folders[root_key] = settings.to_dict()
            self._update_config(folders=folders)

    def _update_config(self, **changes: Any) -> None:
        """Store ``changes`` over the config as stored now, under the writer lock: what another process
        stored since this index was opened (another folder, tuned settings) is kept, not overwritten."""
        stored = self.backend.get_config()
        config = replace(IndexConfig.from_dict(stored) if stored else self.config, **changes)
        self.backend.set_config(config.to_dict())
        self.config = config

    def _dry_run(self, folder_plan: FolderPlan, started: float, show_progress: bool | None) -> SyncReport:
        """The report of a sync that writes nothing: chunks of the changed files, those whose text is not in
        the embedding cache, and the time embedding them would take."""
        documents = [d for d, _ in folder_plan.plan.documents]
        _, texts, hashes = self._chunk(documents, self._progress(show_progress))
        cached = self.backend.cached_vectors(sorted(set(hashes.values())))
        todo = list({h: texts[cid] for cid, h in hashes.items() if h not in cached}.values())
        seconds, basis = self._estimate(todo)
        return folder_plan.report(
            chunks_embedded=len(todo), chunks_total=self.backend.counts()["chunks"], chunks_new=len(texts),
            seconds=time.perf_counter() - started, dry_run=True, estimated_seconds=seconds, estimate_basis=basis,
        )

    def add(self, documents: Iterable[Document], *, show_progress: bool | None = None) -> SyncReport:
        """Add or replace documents that do not come from files (matched by ``Document.id``)."""
        started = time.perf_counter()
        docs, dupes = dedupe_documents([(d, d.id) for d in documents])
        if dupes:
            raise ConfigError(f"add(): duplicate document ids {sorted({d for _, d in dupes})[:5]}")
        self._load_model_if_new()
        with self.backend.writer_lock(self.lock_timeout):
            self._save_new()
            ids = [d.id for d, _ in docs]
            roots = self.backend.document_roots(ids)
            owned = [i for i, root in roots.items() if root is not None]
            if owned:
                raise ConfigError(f"add(): ids {owned[:5]} belong to synced files; change the files instead")
            hashes = self.backend.document_hashes(ids)
            new = [d for d, _ in docs if hashes.get(d.id) != _text_hash(d)]
            prepared, embedded = self._prepare(new, None, show_progress)
            replaced = tuple(d.id for d in new if d.id in hashes)
            if new:
                self.backend.apply(Changes(remove_doc_ids=replaced, add=tuple(prepared)))
                self._measure_competence()
        return SyncReport(
            added=tuple(d.id for d in new if d.id not in hashes), updated=replaced,
            unchanged=tuple(d.id for d, _ in docs if d not in new), chunks_embedded=embedded,
            chunks_total=self.backend.counts()["chunks"], seconds=time.perf_counter() - started,
        )

    def watch(self, folder: str | os.PathLike[str], *, on_sync: Any = None, stop: Any = None,
              debounce_ms: int | None = None, **sync_options: Any) -> int:
        """Sync ``folder`` now and again after each batch of changes to it, until ``stop`` (a
        ``threading.Event``) is set or Ctrl-C; ``on_sync(report)`` sees each :class:`SyncReport`;
        ``sync_options`` as for :meth:`sync`. Returns how many syncs ran. Needs ``ragkit[watch]``.

        A burst of saves is one sync (changes are debounced, ``debounce_ms``, default 400); every sync
        is atomic, so stopping at any moment leaves the index as before or after one.

        Example::

            index.watch("docs/", on_sync=lambda report: print(report.summary()))
        """
        from ragkit.ingest.watch import DEBOUNCE_MS, watch_folder

        ignore = () if "://" in str(self.path) else (self.path,)  # an index inside the folder is not a change
        return watch_folder(folder, lambda: self.sync(folder, **sync_options), on_sync=on_sync, stop=stop,
                            debounce_ms=DEBOUNCE_MS if debounce_ms is None else debounce_ms, ignore=ignore)

    def delete(self, doc_ids: Iterable[str]) -> int:
        """Remove documents by id; returns how many existed. Files synced from a folder come back on the next sync."""
        ids = list(dict.fromkeys(doc_ids))
        if self._unsaved and not self.backend.counts()["documents"]:
            return 0  # nothing was ever written: deleting must not create the index
        with self.backend.writer_lock(self.lock_timeout):
            existing = list(self.backend.document_roots(ids))
            if existing:
                self.backend.apply(Changes(remove_doc_ids=tuple(existing)))
        return len(existing)

    def _load_model_if_new(self) -> None:
        """Before a new index's first write, load the model: a name that does not load (a typo) must
        leave nothing on disk, least of all itself as the index's model."""
        if not self._unsaved:
            return
        self.chunker  # the tokenizer
        if isinstance(self.embedder, text_embedding.Embedder):  # the module's: tests replace ours
            self.embedder.load()  # the weights (ModelNotAvailableError when they cannot be loaded)

    def _save_new(self) -> None:
        """Store a new index's config (or an empty one's new model) with its first write."""
        if self._unsaved:
            self.config = replace(self.config, embedder=embedder_records.record_of(self.embedder))
            self.backend.set_config(self.config.to_dict())
            self._unsaved = False

    def _prepare(
        self, documents: list[Document], root: str | None, show_progress: bool | None
    ) -> tuple[list[PreparedDocument], int]:
        """Chunk, tokenize and embed documents; vectors come from the cache where the text is known."""
        if not documents:
            return [], 0
        show = self._progress(show_progress)
        chunked, texts, hashes = self._chunk(documents, show)
        cached = self.backend.cached_vectors(sorted(set(hashes.values())))
        todo = {h: texts[cid] for cid, h in hashes.items() if h not in cached}
        counter, counts = self.embedder.token_counter(), {}
        if todo:
            logger.info("embedding %d new chunks with %s", len(todo), self.config.model)
            fresh = dict(zip(todo.keys(), self._embed_chunks(list(todo.values()), show, counter, counts)))
            self.backend.cache_vectors(fresh)
            cached.update(fresh)
        self._count_fragmentation(counter, counts, texts.values())
        prepared = []
        for doc, chunks in chunked:
            tokens = self.analyzer.tokenize_many([texts[c.id] for c in chunks])
            prepared.append(PreparedDocument(
                document=doc, text_hash=_text_hash(doc), chunks=chunks, tokens=tokens,
                vectors=[cached[hashes[c.id]] for c in chunks], embed_hashes=[hashes[c.id] for c in chunks],
                root=root, repeated=self._repeated(doc, chunks, [texts[c.id] for c in chunks], tokens),
            ))
        return prepared, len(todo)

    def _repeated(
        self, doc: Document, chunks: list[Chunk], texts: list[str], tokens: list[list[str]]
    ) -> list[list[str]]:
        """Each chunk's tokens that are not its own part of the document: what its BM25 text (``texts``,
        :func:`embedding_text`) puts in front of the chunk (a heading path, a table header) and its
        overlap with the chunk before. BM25's document share counts them once or not at all. Only
        those few words are analysed again (kept only where the chunk's own terms hold them)."""
        if len(chunks) < 2:
            return [[] for _ in chunks]
        again = [text[: len(text) - len(c.text)] + "\n" + overlap
                 for text, c, overlap in zip(texts, chunks, overlaps(chunks, doc.text))]
        return [list((Counter(t) & Counter(r)).elements()) if r else []
                for t, r in zip(tokens, self.analyzer.tokenize_many(again))]

    def _chunk(
        self, documents: list[Document], show: bool
    ) -> tuple[list[tuple[Document, list[Chunk]]], dict[str, str], dict[str, str]]:
        """The documents' chunks, each chunk's embedding text and that text's hash (by chunk id)."""
        chunked = [(doc, self.chunker.split(doc)) for doc in progress(documents, "chunking", show)]
        texts = {c.id: embedding_text(c) for _, chunks in chunked for c in chunks}
        return chunked, texts, {cid: _sha(text) for cid, text in texts.items()}

    def _embed_chunks(
        self, texts: list[str], show: bool, counter: Callable[[str], int], counts: dict[str, int],
    ) -> list[np.ndarray]:
        """Each chunk's vector; a chunk longer than the model's window (text its tokenizer cuts finely,
        sized by ``chunk_counter="model-or-estimate"``) is the mean of its windows' unit vectors, so the
        model reads all of it (ragkit.ingest.chunking.embedding_windows)."""
        limit = self.chunker.max_tokens or self.chunker.limit
        counts.update((text, counter(text)) for text in texts)  # counted once: the windows and fragmentation
        count = lambda text: counts[text] if text in counts else counter(text)  # noqa: E731
        windows = [embedding_windows(text, count, limit) for text in texts]
        if all(len(w) == 1 for w in windows):
            return self._embed(texts, show)
        pieces = [piece for w in windows for piece in w]
        vectors = iter(self._embed(pieces, show, unit="window", windows_per_chunk=len(pieces) / len(texts)))
        pooled = []
        for w in windows:
            mean = np.mean([next(vectors) for _ in w], axis=0)
            pooled.append((mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32))
        return pooled

    def _count_fragmentation(self, counter: Callable[[str], int], counts: dict[str, int], texts: Iterable[str]) -> None:
        """Add the added chunks' model tokens and estimated tokens (``counts`` holds those counted while
        embedding) to the totals the index stores: how finely the model cuts the corpus, which tells fusion
        whether the model can read it (``fusion.yielded_weight``). Read from the stored config, so another
        process's counts are kept. Removals are not subtracted: the ratio describes the text added."""
        if counter is approximate_token_count:
            return
        stored = self.backend.get_config()
        totals = stored.get("fragmentation") if stored else self.config.fragmentation
        if totals is None:  # an index built before counting began: only a rebuild counts all of it
            return
        texts = list(dict.fromkeys(texts))
        if not texts:
            return
        model = sum(counts[t] if t in counts else counter(t) for t in texts)
        self._update_config(fragmentation={
            "model_tokens": int(totals.get("model_tokens", 0)) + model,
            "estimated_tokens": int(totals.get("estimated_tokens", 0)) + sum(map(approximate_token_count, texts))})

    def _measure_competence(self) -> None:
        """After a write that adds, redo the dense leg's known-item self-test when the index has none yet or
        has grown (or shrunk) by :data:`~ragkit.retrieval.competence.REMEASURE_GROWTH` since: 96 short
        queries, and one read of every document to sample them. Evidence, not a requirement: anything that
        fails here (a stored measure that does not parse included) is logged, and the write stands."""
        try:
            documents = self.backend.counts()["documents"]
            last = competence.stored((self.backend.get_config() or {}).get("dense_competence"))
            if documents < competence.MIN_DOCUMENTS or (last is not None and not last.stale(documents)):
                return
            sample = competence.sample_documents(
                ((doc_id, text) for doc_id, text, _ in self.backend.iter_documents()), competence.PROBES)
            view, probes = self.backend.snapshot(), competence.probes_from(sample)
            if view is None:
                return
            result = competence.measure(view, self.query_encoder.embedder, self.analyzer.tokenize, probes, documents)
            self._update_config(dense_competence=result.to_dict())
        except Exception:  # noqa: BLE001 - fusion then keeps the last measure (or none)
            logger.warning("%s: could not measure the dense leg's competence", self.path, exc_info=True)
            return
        logger.info("%s: the dense leg's known-item MRR is %s of BM25's (%d probes)", self.path,
                    "none" if result.ratio is None else f"{result.ratio:.2f}", result.probes)

    def _embed(
        self, texts: list[str], show: bool, unit: str = "chunk", windows_per_chunk: float = 1.0
    ) -> list[np.ndarray]:
        """Embed texts a batch at a time under one bar that counts chunks (chunks/s and an ETA, not the
        model's own "Batches"; ``unit="window"`` when long chunks are read in several windows, so the
        bar's total is what it counts), and record the rate in chunks for a later dry run's estimate.

        The whole add is sorted by length (longest first) before it is cut into batches: a batch pads
        to its longest text, and a document's chunks vary (SciFact's: mean 183 tokens, 90th percentile
        248), so batches in document order pad most chunks to nearly the longest."""
        vectors: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(texts)
        timed, timed_chunks = 0.0, 0
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        size = max(_EMBED_BATCH, int(getattr(self.embedder, "batch_size", 0) or 0))
        with counter(len(texts), "embedding", show, unit=unit) as advance:
            for i, rows in enumerate(batches(order, size)):
                began = time.perf_counter()
                block = self.embedder.encode([texts[j] for j in rows], show_progress=False)
                if i:  # the first batch also loads the model: not part of the rate
                    timed, timed_chunks = timed + time.perf_counter() - began, timed_chunks + len(rows)
                self._check_dimension(block.shape[1])
                for j, vector in zip(rows, block):
                    vectors[j] = vector
                advance(len(rows))
        if timed_chunks >= _RATE_MIN_CHUNKS and timed > 0:
            chunks = timed_chunks / windows_per_chunk
            rate = {"model": self.config.model, "chunks_per_second": round(chunks / timed, 2), "chunks": round(chunks)}
            self._update_config(embedding_rate=rate)
        return vectors

    def _estimate(self, texts: list[str]) -> tuple[float, str]:
        """Seconds to embed ``texts``, and how that was estimated: at the rate the last large enough sync
        measured with this model, or else at one measured now on a sample of them."""
        if not texts:
            return 0.0, "nothing to embed"
        recorded = self.config.embedding_rate or {}
        if recorded.get("model") == self.config.model and recorded.get("chunks_per_second"):
            rate = float(recorded["chunks_per_second"])
            return len(texts) / rate, (f"at {rate:.1f} chunks/s, as measured when this index last embedded "
                                       f"{recorded.get('chunks')} chunks")
        sample = texts[:_RATE_SAMPLE]
        self.embedder.encode(sample[:4], show_progress=False)  # load the model: not part of the rate
        began = time.perf_counter()
        self.embedder.encode(sample, show_progress=False)
        rate = len(sample) / max(time.perf_counter() - began, 1e-6)
        return len(texts) / rate, f"at {rate:.1f} chunks/s, measured now on {len(sample)} of the chunks"

    def _check_dimension(self, dimension: int) -> None:
        if self.config.dimension is None:
            self.config = replace(self.config, dimension=int(dimension))
            self.backend.set_config(self.config.to_dict())
        elif self.config.dimension != dimension:
            raise ModelMismatchError(
                f"model {self.config.model!r} returned {dimension}-d vectors; index {self.path} holds "
                f"{self.config.dimension}-d vectors"
            )

    # -- searching --------------------------------------------------------------------------
    def embed_query(self, query: str) -> np.ndarray:
        """The query's unit vector (the last 256 queries are cached)."""
        return self._encoder.vector(query)

    # What a retriever needs of an index (ragkit.retrieval.source.SearchSource).
    @property
    def query_encoder(self) -> QueryEncoder:
        return self._encoder

    def snapshot(self) -> SearchView | None:
        """A consistent view of the searchable state (None while the index is empty)."""
        view = self.backend.snapshot()
        self._follow_rebuild()
        return view

    def _follow_rebuild(self) -> None:
        """After the backend reopened a rebuilt index (``--rebuild`` swapped it in), use its config."""
        generation = getattr(self.backend, "generation", 0)
        if generation == self._generation:
            return
        stored = self.backend.get_config()
        config = IndexConfig.from_dict(stored) if stored else self.config
        if config.model != self.config.model:
            raise ModelMismatchError(f"index {self.path} was rebuilt with embedding model {config.model!r}, "
                                     f"not {self.config.model!r}; open it again")
        self.config, self._generation, self._chunker = config, generation, None
        self.analyzer = config.analyzer
        self._encoder = QueryEncoder(self.analyzer, embedder_records.QuerySide(self.embedder))

    def learned_state(self) -> LearnedState:
        counts = self.config.fragmentation or {}
        corpus = fragmentation(counts.get("model_tokens", 0), counts.get("estimated_tokens", 0))
        measured = competence.stored(self.config.dense_competence)
        return LearnedState(self.query_adapter, self.query_associations, corpus,
                            None if measured is None else measured.ratio)

    def reload_learned(self) -> LearnedState:
        """Search with what tuning stored since this index was opened (retrieval settings, query adapter,
        associations), e.g. by a ``ragkit tune`` in another process or a server's feedback refresh,
        without reopening: a long-lived server picks up a re-tune. Reads the config only; returns the state."""
        stored = self.backend.get_config()
        if stored:
            fresh = IndexConfig.from_dict(stored)
            self.config = replace(self.config, retrieval=fresh.retrieval, query_adapter=fresh.query_adapter,
                                  query_associations=fresh.query_associations, fragmentation=fresh.fragmentation,
                                  dense_competence=fresh.dense_competence)
        return self.learned_state()

    def retriever(self, **settings: Any) -> HybridRetriever:
        """A :class:`HybridRetriever` with the index's saved settings, overridden by ``settings``."""
        saved = dict(self.config.retrieval or {})
        saved.update(settings)
        return HybridRetriever(self, **saved)

    def search(
        self, query: str, k: int = 10, *, mode: SearchMode = "hybrid", filters: Filters | None = None,
        query_vector: np.ndarray | None = None,
        method: FusionMethod | Unset = UNSET, weight: float | None | Unset = UNSET,
        normalization: Normalization | Unset = UNSET, rrf_k: float | Unset = UNSET,
        depth: int | None | Unset = UNSET, mmr: bool | Unset = UNSET, mmr_lambda: float | Unset = UNSET,
        group_by: Grouping | None | Unset = UNSET, reranker: str | None | Unset = UNSET,
        rerank_depth: int | Unset = UNSET, query_adapter: bool | QueryAdapter | Unset = UNSET,
        associations: bool | QueryAssociations | Unset = UNSET, association_weight: float | Unset = UNSET,
        association_threshold: float | Unset = UNSET, min_score: float | None | Unset = UNSET,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``. ``mode``: "hybrid" (default), "bm25" or "dense".

        ``filters`` restrict both legs before their top-k cut (see :mod:`ragkit.storage.filters`).
        The other options are the fields of :class:`~ragkit.retrieval.settings.RetrievalSettings`
        (see there); each one given overrides the index's saved setting for this call.
        """
        settings = given_settings(
            method=method, weight=weight, normalization=normalization, rrf_k=rrf_k, depth=depth, mmr=mmr,
            mmr_lambda=mmr_lambda, group_by=group_by, reranker=reranker, rerank_depth=rerank_depth,
            query_adapter=query_adapter, associations=associations, association_weight=association_weight,
            association_threshold=association_threshold, min_score=min_score,
        )
        return self.retriever(**settings).search(query, k, mode=mode, filters=filters, query_vector=query_vector)

    @property
    def query_adapter(self) -> QueryAdapter | None:
        """The learned query adapter that search applies to query vectors, if tuning saved one."""
        return self._learned("query_adapter", QueryAdapter)  # type: ignore[return-value]

    def save_query_adapter(self, adapter: QueryAdapter | None) -> None:
        """Store (or, with None, remove) the query adapter that plain ``search`` applies."""
        self._save_learned("query_adapter", adapter)

    @property
    def query_associations(self) -> QueryAssociations | None:
        """The labelled questions whose documents search lifts for similar queries, if tuning saved some."""
        return self._learned("query_associations", QueryAssociations)  # type: ignore[return-value]

    def save_query_associations(self, associations: QueryAssociations | None) -> None:
        """Store (or, with None, remove) the labelled questions that plain ``search`` uses as evidence."""
        self._save_learned("query_associations", associations)

    def _learned(self, name: str, kind: Any) -> Any:
        """The object tuning stored in config field ``name``, decoded once per stored version."""
        stored = getattr(self.config, name)
        if stored is None:
            return None
        cached = self._decoded.get(name)
        if cached is None or cached[0] is not stored:
            cached = self._decoded[name] = (stored, kind.from_dict(stored))
        return cached[1]

    def _save_learned(self, name: str, value: QueryAdapter | QueryAssociations | None) -> None:
        if value is not None and self.config.dimension not in (None, value.dimension):
            raise ConfigError(f"{name.replace('_', ' ')} is {value.dimension}-d; index {self.path} holds "
                              f"{self.config.dimension}-d vectors")
        self._store_config(replace(self.config, **{name: None if value is None else value.to_dict()}))

    def save_retrieval_settings(self, settings: dict[str, Any]) -> None:
        """Store fusion settings (as `ragkit tune` does) so plain ``search`` uses them from now on."""
        import json

        RetrievalSettings.from_dict(settings)  # validate before storing
        try:
            json.dumps(settings, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"retrieval settings must be plain JSON values ({exc}); store a query adapter "
                              "with save_query_adapter and labelled questions with save_query_associations") from None
        self._store_config(replace(self.config, retrieval=dict(settings)))

    def _store_config(self, config: IndexConfig) -> None:
        """Write ``config``, and only then make it this object's: a failed write changes nothing."""
        with self.backend.writer_lock(self.lock_timeout):
            self.backend.set_config(config.to_dict())
        self.config, self._unsaved = config, False

    def gc(self, *, max_bytes: int | None = CACHE_MAX_BYTES,
           max_age_days: float | None = CACHE_MAX_AGE_DAYS) -> dict[str, int]:
        """Trim the embedding cache: drop vectors no chunk uses that are older than ``max_age_days`` or,
        oldest first, beyond ``max_bytes`` of them (``None`` lifts a bound, ``max_bytes=0`` drops them all).

        Every write trims to the defaults; kept vectors make a re-added file or a rebuild embed nothing.
        Returns ``{"removed", "unused_kept", "unused_bytes"}``."""
        if self._unsaved:  # never written: nothing cached, and trimming must not create the index
            return {"removed": 0, "unused_kept": 0, "unused_bytes": 0}
        with self.backend.writer_lock(self.lock_timeout):
            return self.backend.gc(max_bytes, max_age_days)

    # -- inspection -------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Counts, model and size on disk."""
        counts = self.backend.counts()
        return {
            "path": str(self.path), **counts, "model": self.config.model, "dimension": self.config.dimension,
            "dense_index": self.config.dense_index, "chunk_size": self.config.chunk_size,
            "retrieval": self.config.retrieval or "default",
            "query_adapter": f"rank {self.config.query_adapter['rank']}" if self.config.query_adapter else None,
            "query_associations": len(self.config.query_associations["questions"])
            if self.config.query_associations else None,
            **self._model_reads(),
            "bytes_on_disk": self.backend.size_on_disk(),
        }

    def _model_reads(self) -> dict[str, Any]:
        """What tells fusion how well the model reads this corpus (None: not measured): the model's tokens
        per estimated token, and the dense leg's known-item MRR as a share of BM25's (``ratio``, what
        fusion reads), with both MRRs."""
        learned = self.learned_state()
        measured = competence.stored(self.config.dense_competence)
        return {
            "corpus_fragmentation": None if learned.corpus_fragmentation is None
            else round(learned.corpus_fragmentation, 3),
            "dense_competence": None if measured is None else {
                "ratio": None if measured.ratio is None else round(measured.ratio, 3),
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in measured.to_dict().items()}},
        }

    def documents(self) -> list[Document]:
        return [Document(i, text, meta) for i, text, meta in self.backend.iter_documents()]

    def __len__(self) -> int:
        return self.backend.counts()["chunks"]


def embedding_text(chunk: Chunk) -> str:
    """The text embedded and BM25-indexed for a chunk: a later chunk gets its heading path in
    front, so a passage deep in a document still carries what it is about. (Headings, not the
    title: a title can come from the file name, and renaming a file must not change its vectors.)
    A chunk that starts inside a table gets the table's header rows in front of its rows too."""
    text = chunk.text
    header = chunk.metadata.get("table_header")
    if isinstance(header, str) and header:
        text = header + "\n" + text
    headings = [str(h) for h in chunk.metadata.get("headings") or [] if h]
    if chunk.start == 0 or not headings:
        return text
    return " > ".join(headings) + "\n" + text


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _text_hash(doc: Document) -> str:
    import json

    return _sha(doc.text + "\x00" + json.dumps(dict(doc.metadata), sort_keys=True, default=str))
