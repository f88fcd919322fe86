"""Old import paths keep working and warn: every module in ``ragkit._moved.MOVED``, and the old names a
package that kept an old module's name still forwards (``ragkit.retrieval``, ``ragkit.prompting``, ...).

The old paths are imported in a fresh interpreter, so the answer does not depend on what other tests
imported first, and the test process's ``sys.modules`` is left alone.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from ragkit._moved import MOVED

PACKAGE = Path(__file__).resolve().parents[2] / "ragkit"

PROBE = r'''
import importlib, json, sys, warnings

results = {}
for old, new in json.loads(sys.argv[1]).items():
    sys.modules.pop(old, None)  # fresh, even if an earlier import in this loop pulled it in
    namespace = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(f"import {old} as moved\n", "importer.py", "exec"), namespace)
    module = namespace["moved"]
    target = importlib.import_module(new)
    results[old] = {
        "same": module is target and sys.modules[old] is target,
        "spec": module.__spec__.name,
        "name": module.__name__,
        "warnings": [[w.category.__name__, str(w.message), w.filename] for w in caught],
        "again": None,
    }
    with warnings.catch_warnings(record=True) as caught:  # a second import finds sys.modules: no new warning
        warnings.simplefilter("always")
        exec(compile(f"import {old}\n", "importer.py", "exec"), {})
    results[old]["again"] = len(caught)
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def imported() -> dict[str, Any]:
    """What importing each old path in a fresh interpreter gave: identity, warnings, the module's spec."""
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(MOVED)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_moved_paths_are_all_old_top_level_names_of_existing_modules() -> None:
    assert MOVED, "nothing is listed as moved"
    for old, new in MOVED.items():
        assert old.count(".") == 1 and old.startswith("ragkit."), old
        parts = new.split(".")
        exists = PACKAGE.parent.joinpath(*parts).with_suffix(".py").is_file() or \
            PACKAGE.parent.joinpath(*parts, "__init__.py").is_file()
        assert exists, f"{old} points at {new}, which has no source file"
        assert not PACKAGE.joinpath(old.split(".")[1] + ".py").exists(), f"{old} is both moved and still a file"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_gives_the_very_module_with_a_warning_naming_the_new_path(
    old: str, imported: dict[str, Any]
) -> None:
    new = MOVED[old]
    result = imported[old]
    assert result["same"], f"import {old} did not give the module object {new}"
    assert result["name"] == new and result["spec"] == new  # the module still says where it lives
    deprecations = [w for w in result["warnings"] if w[0] == "DeprecationWarning"]
    assert len(deprecations) == 1, result["warnings"]
    _, message, filename = deprecations[0]
    assert old in message and new in message, message
    assert filename == "importer.py", f"the warning points at {filename}, not at the code that imported {old}"
    assert result["again"] == 0


def test_from_import_of_an_old_path_works(forget_fusion_alias: None) -> None:
    with pytest.warns(DeprecationWarning, match=r"ragkit\.fusion has moved to ragkit\.retrieval\.fusion"):
        from ragkit.fusion import reciprocal_rank_fusion  # noqa: F401
    from ragkit.retrieval.fusion import reciprocal_rank_fusion as new

    assert reciprocal_rank_fusion is new


@pytest.fixture
def forget_fusion_alias() -> Any:
    """``test_from_import_of_an_old_path_works`` needs ``ragkit.fusion`` not imported yet in this process."""
    saved = sys.modules.pop("ragkit.fusion", None)
    yield
    sys.modules.pop("ragkit.fusion", None)
    if saved is not None:
        sys.modules["ragkit.fusion"] = saved


# -- packages that kept an old module's name ----------------------------------------------------------
def forwarding_packages() -> list[tuple[str, dict[str, str], tuple[str, ...] | None]]:
    """``(package, exports, old modules)`` of every ``__getattr__ = forward_attributes(...)`` in the source:
    the old modules are where the names of the old module ``package`` live now."""
    found = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        values: dict[str, Any] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                call = node.value
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "forward_attributes":
                    package = ".".join(init.relative_to(PACKAGE.parent).parent.parts)
                    args = call.args
                    exports = values.get(args[1].id, {}) if isinstance(args[1], ast.Name) else ast.literal_eval(args[1])
                    old = ast.literal_eval(args[2]) if len(args) > 2 else None  # one module, or those it split into
                    found.append((package, exports, old if isinstance(old, (tuple, type(None))) else (old,)))
                else:
                    try:
                        values[name] = ast.literal_eval(call)
                    except ValueError:
                        pass
    return found


FORWARDING = forwarding_packages()


def test_the_forwarding_packages_are_found() -> None:
    assert "ragkit.retrieval" in {p for p, _, _ in FORWARDING}


def test_from_ragkit_retrieval_import_hybrid_retriever_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from ragkit.retrieval import HybridRetriever
    from ragkit.retrieval.retriever import HybridRetriever as defined

    assert HybridRetriever is defined


@pytest.mark.parametrize("package, exports, old", FORWARDING, ids=[p for p, _, _ in FORWARDING])
def test_a_package_export_resolves_without_a_warning(
    package: str, exports: dict[str, str], old: tuple[str, ...] | None
) -> None:
    """Also after the submodules are imported: a submodule named like an export (``ragkit.cli.main``)
    would otherwise shadow the exported function with the module."""
    import importlib

    module = importlib.import_module(package)
    for where in set(exports.values()):
        importlib.import_module(where)
    for name, where in exports.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            value = getattr(module, name)
        assert value is getattr(importlib.import_module(where), name), f"{package}.{name}"


@pytest.mark.parametrize("package, exports, old", [f for f in FORWARDING if f[2]], ids=[p for p, _, o in FORWARDING if o])
def test_an_old_name_through_a_package_warns_and_forwards(
    package: str, exports: dict[str, str], old: tuple[str, ...]
) -> None:
    """A name the old module had (here: one of its private helpers, the least "API" there is) still
    resolves on the package, with a warning naming where it lives now; an unknown name is an AttributeError."""
    import importlib

    module = importlib.import_module(package)
    seen: set[str] = set()
    for where in old:  # a name of each module the old one was split into (the first that has it wins)
        source = importlib.import_module(where)
        private = sorted(n for n, v in vars(source).items() if n.startswith("_") and not n.startswith("__")
                         and callable(v) and n not in exports and n not in seen)
        seen.update(vars(source))
        if not private:
            continue
        name = private[0]
        with pytest.warns(DeprecationWarning) as caught:
            value = getattr(module, name)
        assert value is getattr(source, name)
        message = str(caught[0].message)
        assert f"{package}.{name}" in message and f"{where}.{name}" in message, message
    assert seen, f"{package} forwards no old module"
    with pytest.raises(AttributeError, match="no attribute"):
        getattr(module, "no_such_name_anywhere")
    with pytest.raises(AttributeError):
        getattr(module, "__no_such_dunder__")
