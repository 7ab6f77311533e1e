"""Layers import downward only (docs/architecture.md): a walk over every import in cvil/, bench/ and leaderboards/.

Rank, low to high (a module may import its own rank and below):
  0 ground: the top-level helpers of cvil (config, errors, tracking, cli, fileio, precision, torch_files)
  1 data (with input construction: alignment, code-mix, tokenizers, label sets; preparation: MT, the aligner), eval
  2 models, distill
  3 train
  4 analysis, world, demo
  5 bench
  6 leaderboards
Function-level (lazy) imports count too: they couple the layers just the same. The seams refactor (issue 16) moved
the last upward imports away, so ALLOWED_UPWARD is empty; the test fails on a new one (move the shared piece down, or
the caller up) and on an entry that no longer happens, so the list can only shrink. The ranks are those of the
before-stop hook's check (an unknown cvil subpackage ranks 0 there: a new package needs a rank in both).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("cvil", "bench", "leaderboards")
CVIL_RANKS = {"data": 1, "inputs": 1, "eval": 1, "models": 2, "distill": 2, "train": 3, "analysis": 4, "world": 4,
              "demo": 4}

# file:imported module. Empty since the seams refactor (issue 16); an entry needs a reason next to it.
ALLOWED_UPWARD: set[str] = set()


def rank(module: str) -> int | None:
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


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports (`from pkg import sub` counts as pkg.sub when sub is a module)."""
    rel = path.relative_to(REPO)
    package = list(rel.parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(rel))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if _is_module(sub) else module)
    return found


def upward_imports() -> set[str]:
    found = set()
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO)
            me = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            for target in imported_modules(path):
                theirs = rank(target)
                if theirs is not None and theirs > rank(me):
                    found.add(f"{rel.as_posix()}:{target}")
    return found


def test_no_module_imports_a_higher_layer():
    new = sorted(upward_imports() - ALLOWED_UPWARD)
    assert not new, "imports of a higher layer (move the shared piece down, or the caller up):\n" + "\n".join(new)


def test_the_allowlist_of_known_violations_is_not_stale():
    gone = sorted(ALLOWED_UPWARD - upward_imports())
    assert not gone, "no longer imported upward, delete from ALLOWED_UPWARD:\n" + "\n".join(gone)


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
