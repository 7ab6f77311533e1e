"""Layers import downward only, and no modules import each other in a circle (docs/architecture.md): a walk over
every import in cvil/, bench/ and leaderboards/.

Rank, low to high (a module may import its own rank and below):
  0 ground: the top-level helpers of cvil (config, errors, tracking, cli, cli_args, suggest, fileio, precision,
    torch_files)
  1 data (the file readers and writers: QLA, label maps, region features and the packed store, tokenizers, label
    sets; preparation: MT, the aligner), eval
  1.5 inputs (the input construction from what data reads: encoding, alignment, code-mix, collate, the dataset):
    inputs may import data, data must not import inputs
  2 models, distill
  3 train
  4 analysis, world, demo
  5 bench
  6 leaderboards
Function-level (lazy) imports count too: they couple the layers just the same. The seams refactor (issue 16) moved
the last upward imports away, so ALLOWED_UPWARD is empty; the test fails on a new one (move the shared piece down, or
the caller up) and on an entry that no longer happens, so the list can only shrink. The ranks are those of the
before-stop hook's check (an unknown cvil subpackage ranks 0 there: a new package needs a rank in both).

Circles: module A imports B and B (or something B imports) imports A, at any level, function-level included (a lazy
import hides a circle, it does not remove it). Only imports under `if TYPE_CHECKING:` are left out of that walk: they
never run. A circle is broken by moving the shared piece into a module both import (or passing it in), so that the
arrows go one way. ALLOWED_CYCLES lists the known ones, each with its reason; it can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("cvil", "bench", "leaderboards")
CVIL_RANKS = {"data": 1, "inputs": 1.5, "eval": 1, "models": 2, "distill": 2, "train": 3, "analysis": 4, "world": 4,
              "demo": 4}

# file:imported module. Empty since the seams refactor (issue 16); an entry needs a reason next to it.
ALLOWED_UPWARD: set[str] = set()

# The modules of each known import circle. An entry needs a reason next to it; the test fails on a circle not listed
# here and on an entry that is no longer a circle.
ALLOWED_CYCLES: set[frozenset[str]] = set()


def rank(module: str) -> float | None:
    """The layer of a module of this repository, None for anything else (the standard library, torch, ...)."""
    parts = module.split(".")
    if parts[0] == "bench":
        return 5
    if parts[0] == "leaderboards":
        return 6
    if parts[0] != "cvil":
        return None
    return CVIL_RANKS.get(parts[1], 0) if len(parts) > 1 else 0


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, *, runtime_only: bool):
    """Every import statement of `tree`, at any depth; with `runtime_only`, not those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if runtime_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(path: Path, *, runtime_only: bool = False) -> set[str]:
    """Every module `path` imports (`from pkg import sub` counts as pkg.sub when sub is a module); `runtime_only`:
    leave out the imports under `if TYPE_CHECKING:`."""
    rel = path.relative_to(REPO)
    package = list(rel.parent.parts)
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(rel)), runtime_only=runtime_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if _is_module(sub) else module)
    return found


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the repository's packages (a package is its `__init__.py`)."""
    out = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            out[".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = path
    return out


def upward_imports() -> set[str]:
    found = set()
    for me, path in _modules().items():
        rel = path.relative_to(REPO)
        for target in imported_modules(path):
            theirs = rank(target)
            if theirs is not None and theirs > rank(me):
                found.add(f"{rel.as_posix()}:{target}")
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the repository's modules it imports when it runs (every level; not `if TYPE_CHECKING:`)."""
    modules = _modules()
    return {me: {m for m in imported_modules(path, runtime_only=True) if m in modules and m != me}
            for me, path in modules.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per group of modules that import each other (a strongly connected component of more than one
    module), as the path `a -> b -> ... -> a` through it; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is a few hundred modules, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(_circle_through(group, graph) for group in groups)


def _circle_through(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest circle from the group's first module back to itself, inside the group (breadth first)."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:  # v -> start closes the circle; walk back from v to start
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle in {group}")  # a strongly connected group always has one


def test_no_module_imports_a_higher_layer():
    new = sorted(upward_imports() - ALLOWED_UPWARD)
    assert not new, "imports of a higher layer (move the shared piece down, or the caller up):\n" + "\n".join(new)


def test_the_allowlist_of_known_violations_is_not_stale():
    gone = sorted(ALLOWED_UPWARD - upward_imports())
    assert not gone, "no longer imported upward, delete from ALLOWED_UPWARD:\n" + "\n".join(gone)


def test_no_modules_import_each_other_in_a_circle():
    cycles = import_cycles(import_graph())
    new = [" -> ".join(c) for c in cycles if frozenset(c) not in ALLOWED_CYCLES]
    assert not new, ("modules that import each other (function-level imports included; move the shared piece into a "
                     "module both import, so the arrows go one way):\n" + "\n".join(new))


def test_the_allowlist_of_known_cycles_is_not_stale():
    cycles = {frozenset(c) for c in import_cycles(import_graph())}
    gone = sorted(" <-> ".join(sorted(c)) for c in ALLOWED_CYCLES - cycles)
    assert not gone, "no longer a circle, delete from ALLOWED_CYCLES:\n" + "\n".join(gone)


def test_the_cycle_walk_names_lazy_circles_and_skips_type_checking_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from bench import b\n")
    (pkg / "b.py").write_text("def f():\n    from bench.c import g\n")  # lazy: still an arrow
    (pkg / "c.py").write_text("import bench.a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bench import e\n")
    (pkg / "e.py").write_text("from bench import d\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    monkeypatch.setattr(f"{__name__}.ROOTS", ("bench",))
    graph = import_graph()
    assert graph["bench.d"] == set() and graph["bench.e"] == {"bench.d"}
    assert import_cycles(graph) == [["bench.a", "bench.b", "bench.c", "bench.a"]]


def test_the_walk_sees_lazy_relative_and_from_package_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "cvil" / "data"
    pkg.mkdir(parents=True)
    (tmp_path / "cvil" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (tmp_path / "cvil" / "train").mkdir()
    (tmp_path / "cvil" / "train" / "__init__.py").write_text("")
    (tmp_path / "cvil" / "train" / "api.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from cvil.train import api\n    from .. import errors\n"
                              "    from . import y\n    import bench.grid\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    assert imported_modules(pkg / "x.py") == {"cvil.train.api", "cvil", "cvil.data", "bench.grid"}
    assert {rank(m) for m in ("cvil.train.api", "cvil.errors", "bench.grid", "leaderboards.cli", "torch")} == {
        3, 0, 5, 6, None}
