"""The package's shape is kept by running it: import-linter's layers contract (pyproject.toml)
and an import graph built here from the source, counting imports inside functions (a circle
closed at call time is still a circle), so neither can drift from the code."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lib" / "sagebook"
MAX_LINES = 950
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def modules(package: Path) -> dict[str, Path]:
    """Dotted name of every module under `package` (a package is named by its folder)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The package's modules that module `name` imports, wherever the import statement is,
    but under `if TYPE_CHECKING:` (never run)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module
                                                                   else [])) \
                if node.level else node.module or ""
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name imported from a module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph(package: Path) -> dict[str, set[str]]:
    known = modules(package)
    return {name: set(imports(name, path, known)) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circle():
    graph = import_graph(PACKAGE)
    assert "sagebook.record" in graph["sagebook.launch"]  # the graph is the package's
    assert circles(graph) == []


def test_a_circle_closed_inside_a_function_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import c\n"
        "def f():\n    from ..a import name\n")
    (package / "c.py").write_text("from .sub.b import f\n")
    assert circles(import_graph(package)) == [["pkg.a", "pkg.sub.b"]]


def test_no_module_is_over_the_size_of_one_concern():
    assert "sagebook.cli" in modules(PACKAGE)
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules(PACKAGE).items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120)


def layers() -> list[list[str]]:
    """The modules of each layer of the contract, top first."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return [[name.strip() for name in layer.split(":")] for layer in contract["layers"]]


def test_the_layers_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_import_from_a_higher_layer_breaks_the_contract(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "lib" / "sagebook",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    leaf = tmp_path / "lib" / "sagebook" / "errors.py"
    leaf.write_text(leaf.read_text() + "\n\ndef _upward():\n    from . import report\n")
    result = lint_imports(tmp_path, {**os.environ, "PYTHONPATH": str(tmp_path / "lib")})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sagebook.errors -> sagebook.report" in result.stdout


def test_every_module_has_a_layer_and_packages_import_nothing():
    listed = [name for layer in layers() for name in layer]
    assert len(listed) == len(set(listed))
    graph = import_graph(PACKAGE)
    placed = {name for name in graph
              if any(name == m or name.startswith(m + ".") for m in listed)}
    packages = {name for name, path in modules(PACKAGE).items() if path.name == "__init__.py"}
    assert set(graph) - placed <= packages, "a module without a layer in pyproject.toml"
    # a package spanning layers (runs, sweeps) loads none of them when one module is imported
    spanning = {name for name in packages - placed}
    assert {"sagebook.runs", "sagebook.sweeps"} <= spanning
    assert {name: graph[name] for name in spanning if graph[name]} == {}
