"""The architecture of docs/architecture.md, checked from the source with ``ast`` (nothing is imported).

Layers, each importing only itself and the ones below::

    exceptions  <-  state  <-  streams  <-  steps  <-  runtime  <-  console  <-  cli  <-  testing

A module's layer is given by its path (``motia/state/...`` is ``state``). Three checks:

(a) no module imports a module of a higher layer: module-level, function-level and ``if TYPE_CHECKING:``
    imports all count (a re-export kept for an old import path must not be an upward import either);
(b) no import cycle between modules, counting the imports that run (module- and function-level; those
    under ``if TYPE_CHECKING:`` are excluded);
(c) no module over ``MAX_LINES`` lines, except those in ``LONG_MODULES`` (each with its reason).

The facade (``motia/__init__.py``, its helper ``motia/_facade.py``) and ``motia/__main__.py`` sit outside
the layers: see ``FACADE``. No layered module imports them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "motia"

#: The layers, lowest first; a module may import modules of its own layer and the layers before it.
LAYERS = ("exceptions", "state", "streams", "steps", "runtime", "console", "cli", "testing")

#: Modules outside the layers, and the layers each may import. The facade re-exports the public names
#: (``from motia import step``); ``__main__`` is ``python -m motia``.
FACADE = {
    "motia": ("exceptions", "state", "streams", "steps", "runtime", "motia._facade"),
    "motia._facade": (),
    "motia.__main__": ("cli",),
}

#: The longest a module may be (lines), and the documented exceptions: path under src/motia -> reason.
MAX_LINES = 600
LONG_MODULES: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    """One import statement's dependency on a module of the package."""

    source: str  # the importing module
    target: str  # the imported module
    path: Path
    line: int
    type_checking: bool  # under `if TYPE_CHECKING:`

    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    """The layer of ``module`` by its path, or ``None`` for the facade modules."""
    if module in FACADE:
        return None
    top = module.split(".")[1]
    if top not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add its place to LAYERS or FACADE in {__file__}")
    return top


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name of a ``from ... import`` (relative imports included)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The package's modules ``node`` imports: ``from a import b`` is ``a.b`` when that is a module."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "motia":
                yield alias.name
        return
    base = _resolve(module, path, node)
    if base.split(".")[0] != "motia":
        return
    for alias in node.names:
        yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def imports_of(module: str, path: Path) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, type_checking: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(Import(module, t, path, node.lineno, type_checking) for t in _targets(module, path, node))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                visit(statement, True)
            for statement in node.orelse:
                visit(statement, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, type_checking)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


IMPORTS: dict[str, list[Import]] = {name: imports_of(name, path) for name, path in MODULES.items()}


def _rank(layer: str) -> int:
    return LAYERS.index(layer)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module: str) -> None:
    problems = []
    for imp in IMPORTS[module]:
        if imp.target not in MODULES:
            problems.append(f"{imp.where()}: {module} imports {imp.target}, which is no module of the package")
            continue
        kind = " (under TYPE_CHECKING)" if imp.type_checking else ""
        if module in FACADE:
            allowed = FACADE[module]
            if imp.target not in allowed and layer_of(imp.target) not in allowed:
                problems.append(
                    f"{imp.where()}: {module} imports {imp.target}{kind}; the facade module {module} may import "
                    f"only {', '.join(allowed) or 'nothing of the package'}"
                )
            continue
        here = layer_of(module)
        assert here is not None
        if imp.target in FACADE:
            problems.append(
                f"{imp.where()}: {module} imports the facade module {imp.target}{kind}; import the module that "
                "defines the name instead"
            )
            continue
        there = layer_of(imp.target)
        assert there is not None
        if _rank(there) > _rank(here):
            problems.append(
                f"{imp.where()}: {module} (layer {here}) imports {imp.target} (layer {there}){kind}: an upward "
                f"import; layers run {' <- '.join(LAYERS)}"
            )
    assert not problems, "\n".join(problems)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself), run-time edges."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, imports in IMPORTS.items():
        graph[module].update(i.target for i in imports if not i.type_checking and i.target in MODULES)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm (the package is small: recursion is fine)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def test_no_import_cycle() -> None:
    problems = []
    for component in _cycles():
        members = set(component)
        edges = [
            f"    {imp.where()}: {imp.source} imports {imp.target}"
            for module in component
            for imp in IMPORTS[module]
            if not imp.type_checking and imp.target in members
        ]
        problems.append(f"import cycle between {', '.join(component)}:\n" + "\n".join(edges))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    path = MODULES[module]
    key = path.relative_to(PACKAGE).as_posix()
    lines = len(path.read_text().splitlines())
    if key in LONG_MODULES:
        return
    assert lines <= MAX_LINES, (
        f"{path.relative_to(SRC.parent)} has {lines} lines (over {MAX_LINES}): split it by concept, or add it "
        f"to LONG_MODULES in {Path(__file__).name} with the reason"
    )


def test_the_exception_lists_are_current() -> None:
    """Every documented exception names a module that exists and still needs it."""
    for key, reason in LONG_MODULES.items():
        path = PACKAGE / key
        assert path.is_file(), f"LONG_MODULES names {key}, which does not exist"
        assert reason.strip(), f"LONG_MODULES: {key} needs a reason"
        assert len(path.read_text().splitlines()) > MAX_LINES, f"{key} is short enough now: drop it from LONG_MODULES"
    for module in FACADE:
        assert module in MODULES, f"FACADE names {module}, which does not exist"


def test_the_checks_see_the_imports() -> None:
    """A guard for the checks themselves: the parser finds known imports of each kind."""
    app = {(i.target, i.type_checking) for i in IMPORTS["motia.runtime.app"]}
    assert ("motia.runtime.delivery", False) in app
    assert ("motia.steps.definition", False) in app
    cli = {i.target for i in IMPORTS["motia.cli.run"]}  # function-level imports of the serving code
    assert "motia.cli.serve" in cli
    assert {i.target for i in IMPORTS["motia.__main__"]} == {"motia.cli"}
    assert any(i.type_checking for i in IMPORTS["motia.runtime.delivery"])
    assert len(MODULES) > 40
