"""Re-render the overview and the plots of a rendered folder from its own CSVs, without the tracking store.

`cvil-bench leaderboard` builds tables from MLflow runs; the CSV it writes (`<table>.csv`, one row per system ×
column with mean, interval, seeds and mark) holds every number the overview page and the plots show. So when the
presentation changes but the store that produced a committed folder is gone, this rebuilds `index.html`, the grid
PNGs under `plots/` and the plot embedded in each `<table>.html` from those numbers, changing no number:

    python -m leaderboards.from_csv leaderboards/rendered
"""

from __future__ import annotations

import argparse
import base64
import math
import re
import sys
from pathlib import Path

import pandas as pd

from leaderboards import plots, render
from leaderboards.spec import OURS_LABEL, PUBLISHED_LABEL, SPEC_DIR, TableSpec, load_specs
from leaderboards.table import Entry, Table

_IMG = re.compile(r'(<img alt="scores with 95 % CIs per system" src="data:image/png;base64,)[A-Za-z0-9+/=]+(")')
_DATE = re.compile(r"Regenerated from the tracking store on ([^;<]+);")


def _value(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def table_from_csv(spec: TableSpec, csv_path: str | Path) -> Table:
    """The `Table` a long CSV was written from, as far as the overview and plots need (no provenance/tests)."""
    frame = pd.read_csv(csv_path, dtype={"seeds": str, "reason": str, "mark": str}, keep_default_na=True)
    ours = frame[frame["source"] == OURS_LABEL].set_index(["system", "column"])
    entries = {}
    for row in spec.rows:
        for col in spec.columns:
            rec = ours.loc[(row.label, col.label)] if (row.label, col.label) in ours.index else None
            if rec is None:
                entries[(row.label, col.key)] = Entry(row.label, col.key, "missing", "not in the CSV")
                continue
            seeds = _value(rec["seeds"])
            n_q = _value(rec["n_questions"])
            entries[(row.label, col.key)] = Entry(
                row.label, col.key, str(rec["status"]), _value(rec["reason"]) or "", _value(rec["mean"]),
                _value(rec["std"]), _value(rec["ci_low"]), _value(rec["ci_high"]),
                tuple(str(seeds).split(";")) if seeds else (), int(n_q) if n_q is not None else None,
                mark=_value(rec["mark"]) or "")
    published: dict[tuple[str, str], dict] = {}
    for _, rec in frame[frame["source"] == PUBLISHED_LABEL].iterrows():
        setting = _value(rec["reason"]) or ""
        prow = published.setdefault((rec["system"], setting), {"system": rec["system"],
                                                                **({"setting": setting} if setting else {})})
        prow[rec["column"]] = _value(rec["mean"])
    grids = {c.key: spec.grid_for(c) for c in spec.columns}
    return Table(spec, tuple(sorted(set(grids.values()))), entries, list(published.values()), {},
                 column_grids=grids)


def rerender(out_dir: str | Path, spec_dir: str | Path = SPEC_DIR) -> list[Path]:
    """Rewrite index.html, plots/<grid>.png and each page's embedded plot from `<out_dir>/<table>.csv`."""
    out = Path(out_dir)
    tables = [table_from_csv(s, out / f"{s.id}.csv") for s in load_specs(spec_dir) if (out / f"{s.id}.csv").is_file()]
    index = out / "index.html"
    old = index.read_text(encoding="utf-8") if index.is_file() else ""
    generated = _DATE.search(old).group(1) if _DATE.search(old) else "unknown date"
    table_plots = {t.spec.id: plots.table_plot(t) for t in tables}
    written = []
    for t in tables:
        page = out / f"{t.spec.id}.html"
        png = table_plots[t.spec.id]
        if png and page.is_file():
            data = base64.b64encode(png).decode("ascii")
            text = page.read_text(encoding="utf-8")
            page.write_text(_IMG.sub(lambda m: m.group(1) + data + m.group(2), text), encoding="utf-8")
            written.append(page)
    for g in sorted({g for t in tables for g in t.grids}):
        png = plots.grid_plot(tables, g)
        if png is not None:
            (out / "plots").mkdir(exist_ok=True)
            (out / "plots" / f"{g}.png").write_bytes(png)
            written.append(out / "plots" / f"{g}.png")
    index.write_text(render.index_html(tables, generated, table_plots), encoding="utf-8")
    return written + [index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboards.from_csv", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="leaderboards/rendered", help="a rendered leaderboard folder")
    args = parser.parse_args(argv)
    written = rerender(args.out)
    print(f"re-rendered {len(written)} files under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
