"""Old module paths keep working: ``import ragkit.fusion`` gives ``ragkit.retrieval.fusion``, with a
``DeprecationWarning`` that names the new path (the way sentence-transformers moved its modules).

One import hook serves every moved module, so the tree holds no alias files. Packages that kept an
old module's name (``ragkit.retrieval`` was a module, now a package) forward the names that module
had through :func:`forward_attributes`, warning for those that are not the package's own API.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any, Callable, Sequence

MOVED = {
    "ragkit.adapter": "ragkit.retrieval.adapter",
    "ragkit.analysis": "ragkit.text.analysis",
    "ragkit.association": "ragkit.retrieval.association",
    "ragkit.backend": "ragkit.storage.base",
    "ragkit.budget": "ragkit.prompting.budget",
    "ragkit.check": "ragkit.storage.location",
    "ragkit.chunking": "ragkit.ingest.chunking",
    "ragkit.citations": "ragkit.prompting.citations",
    "ragkit.cli_eval": "ragkit.cli.eval",
    "ragkit.cli_prompt": "ragkit.cli.prompt",
    "ragkit.cli_serve": "ragkit.cli.serve",
    "ragkit.datasets": "ragkit.evaluation.datasets",
    "ragkit.dense": "ragkit.storage.dense",
    "ragkit.diversity": "ragkit.retrieval.diversity",
    "ragkit.embedding": "ragkit.text.embedding",
    "ragkit.examples": "ragkit.prompting.examples",
    "ragkit.filters": "ragkit.storage.filters",
    "ragkit.fusion": "ragkit.retrieval.fusion",
    "ragkit.lexical": "ragkit.storage.bm25",
    "ragkit.loading": "ragkit.ingest.loading",
    "ragkit.local": "ragkit.storage.local.backend",
    "ragkit.metrics": "ragkit.evaluation.metrics",
    "ragkit.milvus": "ragkit.storage.milvus.backend",
    "ragkit.store": "ragkit.storage.local.store",
    "ragkit.sync": "ragkit.ingest.sync",
    "ragkit.templates": "ragkit.prompting.templates",
    "ragkit.tokens": "ragkit.text.tokens",
}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} has moved to {new}; import it from there (the old path will be removed in a "
                  "later release)", DeprecationWarning, stacklevel=3)


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and loads it as the module that now lives at the new one."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> ModuleType:
        new = MOVED[spec.name]
        _warn(spec.name, new)
        module = importlib.import_module(new)
        self._spec = module.__spec__  # the import machinery overwrites __spec__; exec_module puts it back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``ragkit/__init__.py`` calls it)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


def forward_attributes(package: str, exports: dict[str, str], old_module: str | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` (name -> submodule) load on first use, so
    importing one submodule does not import its siblings; other names the old module ``package`` had
    (now in ``old_module``) still resolve, with a deprecation warning naming where they live."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        if name.startswith("__") or old_module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(old_module), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        _warn(f"{package}.{name}", f"{old_module}.{name}")
        return value

    return __getattr__
