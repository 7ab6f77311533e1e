"""`cvil-bench leaderboard`: regenerate the paper's tables from the tracking store (never hand-edited).

    cvil-bench leaderboard --tracking-uri sqlite:///mlflow.db --out leaderboards/rendered
    cvil-bench leaderboard --grid my-ja-grid --tables table1a table3

Writes <table>.md / .tex / .csv / .html and index.html under --out, one PNG per grid under <out>/plots/, and logs
each grid's PNG on the grid's parent run (artifact path ``leaderboards/``) when the parent run exists. A table whose
grid has no runs in the store is left as it is (a committed table is not replaced by "missing" rows) unless --force;
the overview keeps showing it from its CSV.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from bench import runs as run_store
from cvil.errors import UsageError
from cvil.suggest import did_you_mean
from leaderboards import plots, render
from leaderboards.spec import SPEC_DIR, load_published, load_specs
from leaderboards.table import Table, build_table


def generate(mlflow_client, out_dir: str | Path, *, grid: str | None = None, table_ids: list[str] | None = None,
             spec_dir: str | Path = SPEC_DIR, generated: str | None = None, log_plots: bool = True,
             force: bool = False, **build_kwargs) -> tuple[list[Table], list[Path]]:
    """Build, render and write every selected table; returns the tables and the written paths. A table without any
    run in its grids (`Table.n_runs == 0`) is not written unless `force` (`untouched(table, force)`)."""
    specs = load_specs(spec_dir)
    if table_ids:
        known = [s.id for s in specs]
        unknown = sorted(set(table_ids) - set(known))
        if unknown:
            hints = "".join(did_you_mean(u, known) for u in unknown)
            raise UsageError(f"unknown table id(s) {unknown}; known: {known}{hints}")
        specs = [s for s in specs if s.id in table_ids]
    published = load_published()
    tables = [build_table(s, mlflow_client, grid=grid, published=published, **build_kwargs) for s in specs]
    out = Path(out_dir)
    kept = [t for t in tables if not untouched(t, force)]
    built = {t.spec.id: t for t in kept}  # the overview: these, and every other table as rendered before (its CSV)
    index_tables = [t for t in (built.get(s.id) or _as_rendered(s, out) for s in load_specs(spec_dir)) if t is not None]
    if not kept:  # nothing rebuilt: not even the overview changes
        return tables, []
    written = render.write_all(kept, out, generated=generated or dt.date.today().isoformat(),
                               plots={t.spec.id: plots.table_plot(t) for t in index_tables},
                               index_tables=index_tables)
    for g in sorted({g for t in kept for g in t.grids}):
        png = plots.grid_plot(kept, g)
        if png is None:
            continue
        path = out / "plots" / f"{g}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        written.append(path)
        parent = run_store.parent_run_id(run_store.find_runs(mlflow_client, grid=g)) if log_plots else None
        if parent:
            mlflow_client.log_artifact(parent, str(path), "leaderboards")
    return tables, written


def untouched(table: Table, force: bool = False) -> bool:
    """A table with no run at all in its grids is left as rendered (unless forced): writing it would replace the
    committed numbers with rows of "missing"."""
    return table.n_runs == 0 and not force


def _as_rendered(spec, out: Path) -> Table | None:
    """What the overview shows for a table not rebuilt now: the one in `out`, read back from its CSV (None if none)."""
    from leaderboards.from_csv import table_from_csv

    csv = out / f"{spec.id}.csv"
    try:
        return table_from_csv(spec, csv) if csv.is_file() else None
    except Exception:  # an unreadable or older CSV: the overview just leaves that table out
        return None


def register(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="regenerate the leaderboard tables from MLflow runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLflow's own resolution)")
    p.add_argument("--grid", default=None, help="read the tables' runs from this grid instead of the specs' default")
    p.add_argument("--tables", nargs="*", default=None, help="table ids (default: all specs)")
    p.add_argument("--specs", default=str(SPEC_DIR), help="folder of table spec YAMLs")
    p.add_argument("--out", default="leaderboards/rendered", help="folder of the rendered tables (default "
                   "leaderboards/rendered)")
    p.add_argument("--n-resamples", type=int, default=9999, help="bootstrap resamples of the significance tests "
                   "(default 9999)")
    p.add_argument("--seed", type=int, default=0, help="seed of the significance tests' resampling (default 0)")
    p.add_argument("--bleu-preset", default=None,
                   help="BLEU the BLEU stars recompute (cvil.eval.bleu preset, default the JVG one; 'sacrebleu' for "
                        "sacrebleu's test with --bleu-tokenize)")
    p.add_argument("--bleu-tokenize", default="ja-mecab", help="sacrebleu tokenizer, with --bleu-preset sacrebleu")
    p.add_argument("--no-significance", action="store_true", help="no significance tests (no stars; faster)")
    p.add_argument("--no-aso", action="store_true", help="skip ASO over the seeds (deepsig; seconds per cell)")
    p.add_argument("--no-log-plots", action="store_true", help="do not log grid plots on the parent runs")
    p.add_argument("--force", action="store_true",
                   help="also write tables whose grid has no runs in the store (all rows \"missing\"); by default "
                        "such a table is left as it is")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no "Downloading artifacts" bars
    tables, written = generate(
        run_store.client(args.tracking_uri), args.out, grid=args.grid, table_ids=args.tables, spec_dir=args.specs,
        log_plots=not args.no_log_plots, significance=not args.no_significance, n_resamples=args.n_resamples,
        seed=args.seed, bleu_tokenize=args.bleu_tokenize, aso=not args.no_aso, bleu_preset=args.bleu_preset,
        force=args.force)
    for t in tables:
        if untouched(t, args.force):
            print(f"{t.spec.id}: no runs of grid {', '.join(t.grids)} in the store; left {args.out}/{t.spec.id}.* "
                  "untouched (--force writes it with every row missing)")
            continue
        statuses = [e.status for e in t.entries.values()]
        print(f"{t.spec.id}: {statuses.count('ok')} ok, {statuses.count('missing')} missing, "
              f"{statuses.count('failed')} failed")
    print(f"wrote {len(written)} files under {args.out}")
    return 0
