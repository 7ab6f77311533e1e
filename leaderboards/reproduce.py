"""Does this tracking store reproduce the committed tables? Each cell's value for the given seeds, against the value
the committed CSV (`leaderboards/rendered/<table>.csv`, column `per_seed`) holds for the same seed, within that cell's
seed spread (its std over the committed seeds).

A fresh clone that runs `nox -s ablations` (seed 0 of Table III) checks itself with this before it renders its own
one-seed table over the committed one. A value outside the spread is a failure (exit 1) and names the cell: the
environment differs (library versions, threads: see the table's provenance) or the code changed the numbers.

    python -m leaderboards.reproduce --tables table3 --seeds 0 [--tracking-uri sqlite:///mlflow.db]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bench import runs as run_store
from leaderboards.spec import load_specs

RENDERED = Path(__file__).resolve().parent / "rendered"


def committed_values(csv_path: Path) -> dict[tuple[str, str], tuple[dict[str, float], float]]:
    """(system, column label) -> ({seed: value}, std over seeds) of our rows in a committed table's CSV."""
    frame = pd.read_csv(csv_path, dtype={"per_seed": str}, keep_default_na=False)
    if "per_seed" not in frame.columns:
        raise ValueError(f"{csv_path}: no per_seed column (rendered before per-seed values were kept): "
                         "re-render the table from its runs with `cvil-bench leaderboard`")
    out = {}
    for rec in frame[(frame["source"] == "ours") & (frame["status"] == "ok")].to_dict("records"):
        values = dict(item.split("=", 1) for item in str(rec["per_seed"]).split(";") if "=" in item)
        out[(rec["system"], rec["column"])] = ({k: float(v) for k, v in values.items()}, float(rec["std"] or 0.0))
    return out


def check_table(spec, seeds: list[str], client, rendered: Path) -> list[dict]:
    """One record per (row, column, seed) that the committed table has: fresh value, committed value, spread."""
    committed = committed_values(rendered / f"{spec.id}.csv")
    out = []
    for row in spec.rows:
        for col in spec.columns:
            if col.published_only or (row.label, col.label) not in committed:
                continue
            values, spread = committed[(row.label, col.label)]
            runs = run_store.latest_per_seed(run_store.find_runs(client, grid=spec.grid_for(col),
                                                                 cell=row.cell_for(col)))
            fresh = {r.seed: r.metrics.get(col.metric) for r in runs}
            for seed in seeds:
                if seed not in values:
                    continue
                value = fresh.get(seed)
                value = None if value is None else value * col.scale
                ok = value is not None and abs(value - values[seed]) <= spread
                out.append({"table": spec.id, "system": row.label, "column": col.label, "seed": seed,
                            "committed": values[seed], "fresh": value, "seed_std": spread,
                            "difference": None if value is None else value - values[seed],
                            "verdict": "ok" if ok else ("missing" if value is None else "OUTSIDE the seed spread")})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m leaderboards.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", nargs="+", required=True, help="table ids, e.g. table3")
    p.add_argument("--seeds", nargs="+", default=["0"], help="the seeds to check (default 0)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: the one `cvil train` uses)")
    p.add_argument("--rendered", default=str(RENDERED), help="folder of the committed CSVs (default %(default)s)")
    args = p.parse_args(argv)
    from bench.tracking import tracking_uri

    specs = {s.id: s for s in load_specs()}
    unknown = [t for t in args.tables if t not in specs]
    if unknown:
        print(f"leaderboards.reproduce: unknown table(s) {unknown}; known: {', '.join(sorted(specs))}", file=sys.stderr)
        return 2
    client = run_store.client(tracking_uri(args.tracking_uri))
    try:
        records = [r for t in args.tables for r in check_table(specs[t], args.seeds, client, Path(args.rendered))]
    except (OSError, ValueError) as exc:  # a committed CSV missing or without per-seed values: one line, exit 2
        print(f"leaderboards.reproduce: {exc}", file=sys.stderr)
        return 2
    if not records:
        print("leaderboards.reproduce: nothing to compare (no committed per-seed values for these seeds)",
              file=sys.stderr)
        return 2
    frame = pd.DataFrame(records)
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    bad = frame[frame["verdict"] != "ok"]
    print(f"{len(frame) - len(bad)} of {len(frame)} committed values reproduced within their cell's seed spread")
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
