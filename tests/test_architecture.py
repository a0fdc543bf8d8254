"""The folders' rules, read from the source: no import cycle anywhere (imports inside functions included, so
that none is hidden), ``models/`` and ``readers/`` import neither Prefect nor DuckDB, every module of
``flows/`` but its parameters and command line defines a flow, and no model name is listed outside the
model registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "models", "data_checks", "readers", "reports", "serve")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def _skipped(node: ast.If) -> bool:
    """``if TYPE_CHECKING:`` (never runs) and ``if __name__ == "__main__":`` (a script's, not the module's)."""
    test = ast.unparse(node.test)
    return test == "TYPE_CHECKING" or test.replace("'", '"') == '__name__ == "__main__"'


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports at run time, at any depth (functions included)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _skipped(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    cycles, state = [], {}

    def walk(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(trail[trail.index(other) :] + [other])
            elif other not in state:
                walk(other, [*trail, other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", ["models", "readers", "reports"])
def test_pure_packages_import_neither_prefect_nor_duckdb(package):
    offenders = {
        name: sorted(m for m in _imports(path) if m.split(".")[0] in ("prefect", "duckdb", "tasks", "flows"))
        for name, path in _modules().items()
        if name.split(".")[0] == package
    }
    assert not {name: found for name, found in offenders.items() if found}


def test_flows_holds_flows_only():
    for path in (ROOT / "flows").glob("*.py"):
        if path.stem in ("__init__", "params", "results", "cli", "options", "stop"):
            continue
        tree = ast.parse(path.read_text())
        decorated = [
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and any("flow" in ast.unparse(d) for d in node.decorator_list)
        ]
        assert decorated == [path.stem], f"{path.name} should define exactly one flow, named {path.stem}"


def test_model_names_are_listed_only_in_the_registry():
    """A tuple or list of two or more model names outside ``models/registry.py`` is a second registry."""
    from models.registry import MODELS

    names = "|".join(MODELS)
    listing = re.compile(rf"""["']({names})["']\s*,\s*["']({names})["']""")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for name, path in _modules().items()
        if name != "models.registry"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if listing.search(line)
    ]
    assert not found, found
