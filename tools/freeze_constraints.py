"""Write constraints.txt: the exact versions installed for `pip install -e '.[dev]'`, so nox, CI and the README's
install reproduce the environment that produced the committed numbers.

The pinned set is the dependency closure of pyproject's `dependencies` + the `dev` extra, walked through the installed
packages' own metadata (markers evaluated for this interpreter), so nothing else in the venv (playwright, the
project itself) is pinned. Regenerate after an upgrade, from the repository root:

    .venv/bin/python tools/freeze_constraints.py        # rewrites constraints.txt
    .venv/bin/python tools/freeze_constraints.py --check  # exit 1 if constraints.txt differs from the venv
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "constraints.txt"
HEADER = """\
# Exact versions behind the committed numbers: the dependency closure of `pip install -e '.[dev]'` as installed
# when they were produced. Used by noxfile.py, .ci/run and the README's install lines (`pip install ... -c
# constraints.txt`). Generated, do not edit: `.venv/bin/python tools/freeze_constraints.py` rewrites it from the
# venv (`--check` compares). torch stays below 2.14 (pyproject's cap: a newer one pulls a CUDA build) and is pinned
# without a local label (no +cpu / +cu126): the build is still the index's choice, see the README's install section.
"""


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def closure(extras: tuple[str, ...] = ("dev",)) -> dict[str, str]:
    """{canonical name: installed version} of every package the project's requirements pull in, transitively."""
    found: dict[str, str] = {}
    todo = [(req, "") for req in _requirements(extras)]
    seen: set[tuple[str, str]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        dist = md.distribution(req.name)  # PackageNotFoundError: the venv lacks a requirement; install it first
        found[name] = dist.version
        for wanted in ("", *sorted(req.extras)):
            if (name, wanted) not in seen:
                seen.add((name, wanted))
                todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return found


def render(versions: dict[str, str]) -> str:
    lines = [f"{name}=={Version(v).public}" for name, v in sorted(versions.items())]  # public: drop +cpu
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write; exit 1 on a difference")
    args = parser.parse_args(argv)
    text = render(closure())
    if args.check:
        same = OUT.is_file() and OUT.read_text(encoding="utf-8") == text
        print(f"{OUT.name}: {'up to date' if same else 'differs from the venv: regenerate it'}")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({text.count(chr(10)) - HEADER.count(chr(10))} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
