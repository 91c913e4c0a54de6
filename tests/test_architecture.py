"""The package's shape, read from its source: an acyclic module graph, and no Dagster in the library.

The graph counts every `import` of a `gtalign` module, function-local ones included: a local import that closes a
cycle hides the cycle from Python's import order but not from whoever changes either module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = "gtalign"


@dataclass(frozen=True, slots=True)
class Edge:
    """One import statement of `source` that loads module `target` (both dotted names)."""

    source: str
    target: str
    path: Path
    line: int
    local: bool  # inside a function or class, not at module level

    def __str__(self) -> str:
        where = "local" if self.local else "top-level"
        return f"{self.source} -> {self.target} ({self.path.as_posix()}:{self.line}, {where})"


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file below `package_dir` (a package is its `__init__.py`)."""
    root = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[str, ast.stmt, bool]]:
    """(absolute dotted name, statement, local) for every name an import statement may load as a module.

    `from a.b import c` yields `a.b.c` (c may be a submodule) and `a.b`; relative imports are resolved against
    `module`'s package."""
    top_level = {id(node) for node in tree.body}
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            yield name, node, id(node) not in top_level


def import_graph(package_dir: Path) -> dict[str, list[Edge]]:
    """Module -> its import edges into the same package (the longest existing module a name starts with).

    A module's import of its own ancestor package is left out: Python loads the ancestor first anyway."""
    modules = package_modules(package_dir)
    prefix = package_dir.name

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, list[Edge]] = {m: [] for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        seen: set[tuple[str, int]] = set()
        for name, node, local in imported_names(tree, module, path.name == "__init__.py"):
            if not (name == prefix or name.startswith(prefix + ".")):
                continue
            target = resolve(name)
            if target is None or target == module or module.startswith(target + "."):
                continue
            if (target, node.lineno) not in seen:
                seen.add((target, node.lineno))
                rel = path.relative_to(package_dir.parent)
                graph[module].append(Edge(module, target, rel, node.lineno, local))
    return graph


def cycles(graph: Mapping[str, list[Edge]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted({e.target for e in graph[v]}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(graph: Mapping[str, list[Edge]], component: list[str]) -> str:
    """A cycle and the import statements that close it (the edges inside the component)."""
    inside = set(component)
    edges = [e for m in component for e in graph[m] if e.target in inside]
    return "cycle: " + ", ".join(component) + "".join(f"\n    {e}" for e in edges)


# ----------------------------------------------------------------------------------------------- the package
def test_the_package_import_graph_has_no_cycle():
    graph = import_graph(REPO_ROOT / PACKAGE)
    found = cycles(graph)
    assert not found, f"{len(found)} import cycle(s) in {PACKAGE}/:\n" + "\n".join(describe(graph, c) for c in found)


def test_the_library_imports_no_dagster():
    """Dagster drives the library (pipelines/), never the reverse: `gtalign` runs where Dagster is not installed.
    `dagster_pipes`, the dependency-free protocol a Pipes subprocess speaks, is not Dagster."""
    offenders = [
        f"{path.as_posix()}:{node.lineno} imports {name}"
        for module, path in package_modules(REPO_ROOT / PACKAGE).items()
        for name, node, _ in imported_names(
            ast.parse(path.read_text(encoding="utf-8")), module, path.stem == "__init__"
        )
        if name == "dagster" or name.startswith("dagster.")
    ]
    assert not offenders, "\n".join(offenders)


# ---------------------------------------------------------------------------------- the checker on a toy package
def _package(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "pkg"


def test_checker_sees_local_and_relative_imports_and_ignores_ancestors_and_other_packages(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import f\n",
            "pkg/a.py": "import os\nfrom . import b\n\ndef f():\n    from pkg.sub.c import g\n",
            "pkg/b.py": "import pkg\nfrom pkg.sub import c\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from .. import d\nfrom ..a import f as h\nimport numpy\n",
            "pkg/d.py": "from pkg.sub.c import missing_name\n",
        },
    )
    graph = import_graph(pkg)
    targets = {m: sorted({e.target for e in edges}) for m, edges in graph.items()}
    assert targets == {
        "pkg": ["pkg.a"],
        "pkg.a": ["pkg.b", "pkg.sub.c"],
        "pkg.b": ["pkg.sub", "pkg.sub.c"],  # `import pkg` from inside pkg: the ancestor is left out
        "pkg.sub": [],
        "pkg.sub.c": ["pkg.a", "pkg.d"],
        "pkg.d": ["pkg.sub.c"],  # a name from a module: the module
    }
    [local] = [e for e in graph["pkg.a"] if e.target == "pkg.sub.c"]
    assert local.local and local.line == 5 and local.path == Path("pkg/a.py")
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.d", "pkg.sub.c"]]
    text = describe(graph, cycles(graph)[0])
    assert (
        "pkg.a -> pkg.sub.c (pkg/a.py:5, local)" in text and "pkg.sub.c -> pkg.d (pkg/sub/c.py:1, top-level)" in text
    )


def test_checker_finds_no_cycle_in_a_tree(tmp_path):
    pkg = _package(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "import json\n"})
    assert cycles(import_graph(pkg)) == []
