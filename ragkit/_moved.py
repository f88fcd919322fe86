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


def forward_attributes(
    package: str, exports: dict[str, str], old_module: str | tuple[str, ...] | None = None
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` (name -> submodule) load on first use, so
    importing one submodule does not import its siblings; other names the old module ``package`` had
    (now in ``old_module``, or in one of several modules it was split into) still resolve, with a
    deprecation warning naming where they live."""
    old_modules = (old_module,) if isinstance(old_module, str) else old_module or ()

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        if not name.startswith("__"):
            for module in old_modules:
                try:
                    value = getattr(importlib.import_module(module), name)
                except AttributeError:
                    continue
                _warn(f"{package}.{name}", f"{module}.{name}")
                return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
