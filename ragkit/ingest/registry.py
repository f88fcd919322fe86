"""Which loader reads which file: one table from file extension to loader, built-ins and plug-ins alike.

A loader is a function ``fn(data: bytes, context: LoadContext) -> list[Document]``: it gets the file's
bytes (read once by the sync) and returns its documents, with structure in their metadata
(``outline``: headings as ``[offset, level, title]``; ``pages``: ``[offset, page]``; ``locations``:
``[offset, {"slide": 3}]`` for slides, sheets and the like; ``notes``: remarks the sync report shows),
or raises :class:`~ragkit.errors.LoadError` naming the file and the reason.

Built-in loaders are named here as ``"module:function"`` strings and imported on first use, so
listing what is loadable costs no parser imports. ``register_loader(".ext", fn)`` adds or replaces a
loader for this process; a package adds loaders for every process through the ``ragkit.loaders``
entry-point group (name: the extension, value: ``"package.module:function"``)::

    [project.entry-points."ragkit.loaders"]
    ".msg" = "mypkg.outlook:load_msg"

Every loader runs under the per-file limits (:mod:`ragkit.ingest.limits`). One marked ``isolated``
(the default for all but the plain-text formats) runs in a worker process (:mod:`ragkit.ingest.worker`),
which imports it by name: a function defined in a script's ``__main__`` or inside another function
cannot be imported there, so it runs in the syncing process, bounded by ``max_chars`` only (logged).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragkit.errors import ConfigError, LoadError
from ragkit.types import Document

__all__ = [
    "CODE_NAMES", "CODE_SUFFIXES", "ENTRY_POINT_GROUP", "IMAGE_SUFFIXES", "LoadContext", "Loader", "LoaderSpec",
    "apply_overrides", "enable_image_ocr", "loader_for", "needs_extra", "register_loader", "registered_extensions",
    "resolve", "shipped_overrides",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ragkit.loaders"


@dataclass(frozen=True)
class LoadContext:
    """What a loader is told about the file besides its bytes.

    ``source``: the path relative to the synced folder (the document id and ``source`` metadata);
    ``name``: the file name; ``kind``: its registry kind ("docx", "markdown", ...); ``max_chars``: the most characters of text it may return (a loader that
    stops early says so in a note); ``page_seconds``: the time one page (or sheet, or image) may take;
    ``options``: loader options from the sync (``json_text_field``, ``ocr``, ...).
    """

    source: str
    name: str
    kind: str = "text"
    max_chars: int = 10_000_000
    page_seconds: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def metadata(self, kind: str | None = None, **extra: Any) -> dict[str, Any]:
        """The metadata every document of this file starts from (``type``: ``kind``, default the registry's)."""
        stem = os.path.splitext(os.path.basename(self.source))[0] or os.path.basename(self.source)
        return {"source": self.source, "title": stem, "type": kind or self.kind, **extra}


Loader = Callable[[bytes, LoadContext], Sequence[Document]]


@dataclass(frozen=True)
class LoaderSpec:
    """One registry entry: ``target`` is a callable or a ``"module:function"`` name; ``kind`` goes into
    each document's ``type`` metadata; ``isolated``: parse in a worker process; ``extra``: the ragkit
    extra its libraries come from (for the "needs ragkit[...]" message)."""

    extension: str
    target: Loader | str
    kind: str
    isolated: bool = True
    extra: str | None = None

    @property
    def importable(self) -> str | None:
        """``"module:qualname"`` if a fresh process can import the loader by name, else ``None``."""
        if isinstance(self.target, str):
            return self.target
        module, qualname = getattr(self.target, "__module__", None), getattr(self.target, "__qualname__", "")
        if not module or module == "__main__" or "<" in qualname:
            return None
        return f"{module}:{qualname}"


def _builtins() -> dict[str, LoaderSpec]:
    text = "ragkit.ingest.loading:load_plain"
    table: list[tuple[str, str, str, bool, str | None]] = [
        (".txt", text, "text", False, None), (".rst", text, "text", False, None),
        (".md", text, "markdown", False, None), (".markdown", text, "markdown", False, None),
        (".html", "ragkit.ingest.loading:load_html", "html", False, None),
        (".htm", "ragkit.ingest.loading:load_html", "html", False, None),
        (".json", "ragkit.ingest.loading:load_json", "json", False, None),
        (".jsonl", "ragkit.ingest.loading:load_json", "json", False, None),
        (".pdf", "ragkit.ingest.formats.pdf:load_pdf", "pdf", True, None),
        (".docx", "ragkit.ingest.formats.office:load_docx", "docx", True, "docs"),
        (".pptx", "ragkit.ingest.formats.office:load_pptx", "pptx", True, "docs"),
        (".xlsx", "ragkit.ingest.formats.sheets:load_xlsx", "xlsx", True, "docs"),
        (".csv", "ragkit.ingest.formats.sheets:load_csv", "csv", False, None),
        (".tsv", "ragkit.ingest.formats.sheets:load_csv", "tsv", False, None),
        (".epub", "ragkit.ingest.formats.other:load_epub", "epub", True, "docs"),
        (".odt", "ragkit.ingest.formats.other:load_odt", "odt", True, "docs"),
        (".rtf", "ragkit.ingest.formats.other:load_rtf", "rtf", True, "docs"),
        # The standard library parses e-mail in linear time: in process, like text (1 MB or more: a worker).
        (".eml", "ragkit.ingest.formats.other:load_eml", "email", False, None),
    ]
    specs = {ext: LoaderSpec(ext, target, kind, isolated, extra) for ext, target, kind, isolated, extra in table}
    for ext in CODE_SUFFIXES:
        specs[ext] = LoaderSpec(ext, "ragkit.ingest.loading:load_plain", "code", False)
    return specs


CODE_SUFFIXES = (
    ".py .js .ts .tsx .jsx .java .c .h .cpp .hpp .cs .go .rs .rb .php .sh .sql .yaml .yml .toml .ini .cfg"
    " .css .scala .kt .swift .r .m .lua .pl"
).split()
CODE_NAMES = frozenset({"Dockerfile", "Makefile"})
# Image files are read by OCR only when asked for (``ragkit index --ocr-images``, :func:`enable_image_ocr`):
# most folders' pictures are photos and diagrams, whose OCR would be noise at a second per image.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_lock = threading.Lock()
_registry: dict[str, LoaderSpec] = {}
_overrides: dict[str, LoaderSpec] = {}  # registered in this process, shipped to worker processes
_plugins_loaded = False


def _normalise(extension: str) -> str:
    if not isinstance(extension, str) or not extension.strip("."):
        raise ConfigError(f"register_loader: extension must look like '.ext', got {extension!r}")
    extension = extension.lower()
    return extension if extension.startswith(".") else "." + extension


def register_loader(
    extension: str, loader: Loader | str, *, kind: str | None = None, isolated: bool = True,
) -> None:
    """Read files ending in ``extension`` with ``loader`` (a function or a ``"module:function"`` name),
    replacing any loader that had it. ``kind`` (default: the extension without its dot) is the
    documents' ``type`` metadata; ``isolated=False`` parses in the syncing process (only for fast,
    trusted parsers: limits of time and memory then do not apply).

    Example::

        def load_notes(data: bytes, context: ragkit.LoadContext) -> list[ragkit.Document]:
            return [ragkit.Document(context.source, data.decode(), context.metadata("notes"))]

        ragkit.register_loader(".notes", load_notes)
    """
    ext = _normalise(extension)
    if not (callable(loader) or (isinstance(loader, str) and ":" in loader)):
        raise ConfigError(f"register_loader({ext!r}): loader must be a function or 'module:function', got {loader!r}")
    spec = LoaderSpec(ext, loader, kind or ext[1:], isolated)
    if isolated and spec.importable is None:
        logger.warning("loader for %s (%r) cannot be imported by a worker process (defined in __main__ or a "
                       "function): it runs in this process, bounded by max_chars only", ext, loader)
    with _lock:
        _ensure_plugins()
        _registry[ext] = _overrides[ext] = spec


def enable_image_ocr() -> None:
    """Index ``.png``, ``.jpg``, ``.jpeg``, ``.tif`` and ``.tiff`` files by OCR (needs ``ragkit[ocr]``)."""
    for ext in IMAGE_SUFFIXES:
        register_loader(ext, "ragkit.ingest.formats.ocr:load_image", kind="image")


def _ensure_plugins() -> None:
    """Fill the table once: built-ins first, then entry points (a package may replace a built-in)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _registry.update(_builtins())
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ext = _normalise(ep.name)
        except ConfigError:
            logger.warning("ignoring entry point %s = %s: its name is not an extension", ep.name, ep.value)
            continue
        _registry[ext] = LoaderSpec(ext, ep.value, ext[1:], True)
    _plugins_loaded = True


def loader_for(name: str) -> LoaderSpec | None:
    """The loader for a file name or an extension (``"report.docx"``, ``".docx"``), or ``None``."""
    with _lock:
        _ensure_plugins()
        if name in CODE_NAMES:
            return LoaderSpec(name, "ragkit.ingest.loading:load_plain", "code", False)
        ext = name.lower() if name.startswith(".") and name.count(".") == 1 else os.path.splitext(name)[1].lower()
        return _registry.get(ext)


def registered_extensions() -> frozenset[str]:
    """Every extension a loader is registered for (lower case, with the dot): the files a sync lists."""
    with _lock:
        _ensure_plugins()
        return frozenset(_registry)


def shipped_overrides() -> dict[str, tuple[str, str, bool]]:
    """The loaders registered in this process that a worker process can import, as
    ``{extension: (target, kind, isolated)}``, for :func:`apply_overrides` there."""
    with _lock:
        return {ext: (s.importable, s.kind, s.isolated) for ext, s in _overrides.items() if s.importable}


def apply_overrides(overrides: Mapping[str, tuple[str, str, bool]]) -> None:
    """Register, in a worker process, the loaders its parent had registered."""
    for ext, (target, kind, isolated) in overrides.items():
        register_loader(ext, target, kind=kind, isolated=isolated)


def resolve(spec: LoaderSpec) -> Loader:
    """The loader function of ``spec``, imported if named; a loader that cannot be imported, or whose
    libraries are missing, is a LoadError saying what to install."""
    if callable(spec.target):
        return spec.target
    module_name, _, qualname = spec.target.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise LoadError(spec.extension, f"cannot import its loader {spec.target!r}: {exc}") from None
    return value


def needs_extra(source: str, extra: str, missing: str) -> LoadError:
    """The error of a loader whose libraries are not installed: reported, never a silent skip."""
    return LoadError(source, f"needs ragkit[{extra}]: pip install 'ragkit[{extra}]' ({missing} is not installed)")
