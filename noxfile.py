"""Developer sessions: `nox` (= `nox -s tests`), `nox -s ablations`, `leaderboards`, `throughput`, `scale`, `ui`,
`dashboard`.

Every session installs the project itself (`pip install -e '.[dev]' -c constraints.txt`: the pinned versions behind
the committed numbers) with the pip configuration of the machine (the torch build is whatever that index serves for
the pinned torch: see the README's install section) and reuses its virtualenv: a fresh one costs minutes (torch), a
reused one seconds; arguments are checked before installing. Arguments after `--` go to the underlying command, e.g.
`nox -s ablations -- --seeds 3`. For the real data and checkpoints use the paper-schedule grid instead:
`cvil-bench grid paper_table3_ablations data.root=/data/cvil kd.teacher=/ckpt/oscar_plus_vqa model.init=/ckpt/mbert`.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "virtualenv"  # not uv: it ignores pip's configuration and fetches CUDA torch

GRIDS = sorted(p.stem for p in (Path(__file__).parent / "bench" / "grids").glob("*.yaml"))


CONSTRAINTS = ("-c", "constraints.txt")  # tools/freeze_constraints.py writes it


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]", *CONSTRAINTS)


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The test suite, exactly as the README's test command runs it (`python -m pytest -q`)."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(reuse_venv=True)
def ablations(session: nox.Session) -> None:
    """Table III end to end on the synthetic world (one seed by default), the check that seed 0 reproduces the
    committed table, then its significance + leaderboard."""
    _install(session)
    # exit code 1 = some cell failed: the summary says which and why; the table is still built from the rest
    jobs = str(os.cpu_count() or 1)  # cells train with one thread each: one cell per core
    session.run("cvil-bench", "grid", "table3_ablations", "--seeds", "1", "--jobs", jobs, *session.posargs,
                success_codes=[0, 1])
    # seed 0 against the committed table's seed-0 values, within each cell's seed spread (fails the session if not),
    # before the one-seed table is rendered over the committed one
    session.run("python", "-m", "leaderboards.reproduce", "--tables", "table3", "--seeds", "0")
    session.run("cvil-bench", "leaderboard", "--tables", "table3")  # the spec names its grid (table3_ablations)


@nox.session(reuse_venv=True)
def leaderboards(session: nox.Session) -> None:
    """Regenerate every table from the local tracking store (no training)."""
    _install(session)
    session.run("cvil-bench", "leaderboard", *session.posargs)  # every table from the grid its spec names


@nox.session(reuse_venv=True)
def throughput(session: nox.Session) -> None:
    """The throughput benchmarks (pytest-benchmark), which the normal test run skips."""
    _install(session)
    session.run("python", "-m", "pytest", "tests/benchmarks", "--benchmark-only", *session.posargs)


@nox.session(reuse_venv=True)
def scale(session: nox.Session) -> None:
    """The input path at the paper's scale (`bench/scale.py`): memory per process, open time, KD samples per
    CPU-second beside the per-example path. 647,480 rows by default (minutes; the world is kept in
    .benchmarks/scale-world); `nox -s scale -- --rows 20000 --images 500` is the quick one. JSON: .benchmarks/scale.json."""
    _install(session)
    session.run("python", "-m", "bench.scale", "--root", ".benchmarks/scale-world", "--out", ".benchmarks/scale.json",
                *session.posargs)


@nox.session(reuse_venv=True)
def ui(session: nox.Session) -> None:
    """The MLflow UI for the local store on http://127.0.0.1:5000 (`-- --port P` to change); Ctrl-C stops it."""
    _install(session)
    session.run("cvil-bench", "ui", *session.posargs)


@nox.session(reuse_venv=True)
def dashboard(session: nox.Session) -> None:
    """optuna-dashboard on a `cvil-bench search` journal at http://127.0.0.1:8080 (`-- PATH_OR_URL [--port P]`).

    Without arguments it opens the only journal under runs/search/ (the search's default storage).
    """
    args = dashboard_args(list(session.posargs), session.error)  # before the minutes-long install
    session.install("-e", ".[dev,dashboard]", *CONSTRAINTS)
    session.run("optuna-dashboard", *args)


def dashboard_args(args: list[str], error) -> list[str]:
    """optuna-dashboard's arguments: the journal named first (a file that must exist, or a storage URL), else the
    only journal under runs/search/; `error(message)` (nox's `session.error`) stops with one line otherwise."""
    if not args or args[0].startswith("-"):
        journals = sorted(Path("runs/search").glob("*.journal"))
        if len(journals) != 1:
            error(f"found {len(journals)} journals under runs/search/; name one: nox -s dashboard -- PATH")
        return [str(journals[0]), *args]
    if "://" not in args[0] and not Path(args[0]).is_file():
        error(f"{args[0]}: no such journal file (a `cvil-bench search` journal, e.g. runs/search/<study>.journal, "
              "or a storage URL)")
    return args
