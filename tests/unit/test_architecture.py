"""The package's import graph, read from the source with ``ast`` (nothing is imported).

Every import counts: module level, under ``TYPE_CHECKING`` and inside functions, since a type-level or
deferred cycle is still a cycle in the design. Imports of the top-level ``ragkit/__init__.py`` (the lazy
facade every module may name) are not counted. Two rules:

* no import cycle between ragkit modules;
* no module imports a ``_private`` name from another ragkit module (``from ragkit.x import _name`` or
  its relative form); a name another module needs is public.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ragkit"
TOP = PACKAGE.name


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file of the package."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = modules()


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """``(target module, imported name or None, line)`` for every import statement in a module's source
    whose target is a module of the package. ``from pkg import sub`` targets the submodule ``pkg.sub``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                # `import ragkit.a.b` binds ragkit and imports ragkit.a and ragkit.a.b: the deepest known one counts
                target = alias.name
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target:
                    out.append((target, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                if node.level - 1 > len(parts) - 1:
                    continue  # beyond the top package: not ours
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in known else base, alias.name, node.lineno))
    return [(t, n, line) for t, n, line in out if t in known]


def graph(known: dict[str, Path] = MODULES) -> tuple[dict[str, set[str]], list[str]]:
    """The import edges between modules (facade and self-imports left out), and the private imports."""
    edges: dict[str, set[str]] = {name: set() for name in known}
    private = []
    for name, path in known.items():
        for target, imported, line in imports_of(name, path, known):
            if target in (name, TOP):
                continue
            edges[name].add(target)
            if imported and imported.startswith("_") and not imported.startswith("__"):
                private.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {imported} from {target}")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def a_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """The shortest loop from the component's first module back to it, e.g. ``[a, b, a]``."""
    members, start = set(component), component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges[node] & members):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1] + [start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    return component  # not reached for a strongly connected component


# -- the checker itself, on small made-up packages --------------------------------------------------
def write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return modules(root / "pkg")


def test_the_checker_finds_deferred_and_type_checking_cycles(tmp_path: Path) -> None:
    known = write_package(tmp_path, {
        "__init__.py": "from .a import thing\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.b import B\n",
        "sub/__init__.py": "",
        "sub/b.py": "def f():\n    from ..a import thing\n",
        "c.py": "import pkg\nfrom pkg import a\n",  # the facade does not count; pkg.a does
    })
    edges = {name: set() for name in known}
    for name, path in known.items():
        for target, _, _ in imports_of(name, path, known):
            if target not in (name, "pkg"):
                edges[name].add(target)
    assert edges["pkg.a"] == {"pkg.sub.b"} and edges["pkg.sub.b"] == {"pkg.a"} and edges["pkg.c"] == {"pkg.a"}
    assert cycles(edges) == [["pkg.a", "pkg.sub.b"]]
    assert a_cycle(["pkg.a", "pkg.sub.b"], edges) == ["pkg.a", "pkg.sub.b", "pkg.a"]


def test_the_checker_resolves_relative_and_submodule_imports(tmp_path: Path) -> None:
    known = write_package(tmp_path, {
        "__init__.py": "",
        "x/__init__.py": "from . import y\nfrom .y import _hidden\n",
        "x/y.py": "from ..z import public\nimport pkg.z\n",
        "z.py": "",
    })
    found = {name: sorted({(t, n or "") for t, n, _ in imports_of(name, path, known)}) for name, path in known.items()}
    assert found["pkg.x"] == [("pkg.x.y", "_hidden"), ("pkg.x.y", "y")]
    assert found["pkg.x.y"] == [("pkg.z", ""), ("pkg.z", "public")]


# -- the rules, on ragkit ----------------------------------------------------------------------------
def test_the_walk_sees_the_whole_package() -> None:
    assert {"ragkit", "ragkit.index", "ragkit.retrieval.retriever", "ragkit.storage.local.backend"} <= set(MODULES)
    edges, _ = graph()
    assert "ragkit.retrieval.fusion" in edges["ragkit.retrieval.retriever"]  # a plain from-import is seen


def test_no_import_cycle_between_ragkit_modules() -> None:
    edges, _ = graph()
    found = cycles(edges)
    loops = [" -> ".join(a_cycle(c, edges)) + (f"  (component of {len(c)})" if len(c) > 2 else "") for c in found]
    assert not found, "import cycles (TYPE_CHECKING and function-level imports count):\n" + "\n".join(loops)


def test_no_module_imports_a_private_name_from_another() -> None:
    _, private = graph()
    assert not private, "private names imported across modules (make them public or move them):\n" + "\n".join(private)

