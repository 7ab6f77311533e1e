"""Developer sessions: `nox` (= `nox -s tests`), `nox -s ablations`, `leaderboards`, `throughput`, `ui`, `dashboard`.

Every session installs the project itself (`pip install -e '.[dev]'`), whose torch range resolves to the CPU
wheel on a machine without a GPU, and reuses its virtualenv: a fresh one costs minutes (torch), a reused one
seconds. Arguments after `--` go to the underlying command, e.g.
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


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The test suite, exactly as the README's test command runs it (`python -m pytest -q`)."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(reuse_venv=True)
def ablations(session: nox.Session) -> None:
    """Table III end to end on the synthetic world (one seed by default), then its significance + leaderboard."""
    _install(session)
    # exit code 1 = some cell failed: the summary says which and why; the table is still built from the rest
    jobs = str(os.cpu_count() or 1)  # cells train with one thread each: one cell per core
    session.run("cvil-bench", "grid", "table3_ablations", "--seeds", "1", "--jobs", jobs, *session.posargs,
                success_codes=[0, 1])
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
def ui(session: nox.Session) -> None:
    """The MLflow UI for the local store on http://127.0.0.1:5000 (`-- --port P` to change); Ctrl-C stops it."""
    _install(session)
    session.run("cvil-bench", "ui", *session.posargs)


@nox.session(reuse_venv=True)
def dashboard(session: nox.Session) -> None:
    """optuna-dashboard on a `cvil-bench search` journal at http://127.0.0.1:8080 (`-- PATH_OR_URL [--port P]`).

    Without arguments it opens the only journal under runs/search/ (the search's default storage).
    """
    session.install("-e", ".[dev,dashboard]")
    args = list(session.posargs)
    if not args or args[0].startswith("-"):
        journals = sorted(Path("runs/search").glob("*.journal"))
        if len(journals) != 1:
            session.error(f"found {len(journals)} journals under runs/search/; name one: nox -s dashboard -- PATH")
        args.insert(0, str(journals[0]))
    session.run("optuna-dashboard", *args)
