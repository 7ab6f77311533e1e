"""Scores with their 95 % CIs per system, as PNG bytes (matplotlib, Agg: no display needed).

One panel per table column: ours as points with t-interval error bars over seeds, the paper's numbers (when a
published row has the same system label) as hollow markers, so a reader sees spread and reference at a glance.
Used per table (embedded in the HTML page) and per grid (written as PNG, logged on the grid's parent run).
"""

from __future__ import annotations

import io
import math

from leaderboards.spec import published_number
from leaderboards.table import Table

PANELS_PER_ROW = 3


def panels_for(tables: list[Table], grid: str | None = None) -> list[dict]:
    """Panel data from tables; with ``grid``, only columns whose runs come from that grid (deduplicated)."""
    panels, seen = [], set()
    for t in tables:
        published = {p["system"]: p for p in t.published if not p.get("setting")}
        for col in t.spec.columns:
            if col.published_only:
                continue
            if grid is not None and t.column_grids.get(col.key) != grid:
                continue
            keys = {(t.column_grids.get(col.key), r.cell_for(col), col.metric, col.subset_column, col.subset)
                    for r in t.spec.rows}
            if keys <= seen:  # every point already drawn by an earlier table (e.g. IV's JVG columns = I(a)'s)
                continue
            seen |= keys
            points = []
            for row in t.spec.rows:
                e = t.entry(row, col)
                pub = published_number(published.get(row.label, {}).get(col.label))
                points.append({"label": row.label, "mean": e.mean, "low": e.ci_low, "high": e.ci_high,
                               "status": e.status, "published": pub})
            panels.append({"title": f"{t.spec.paper_table} {col.label}".strip(), "points": points})
    return panels


def plot_panels(panels: list[dict], suptitle: str = "") -> bytes | None:
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(PANELS_PER_ROW, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    height = max(2.0, 0.45 * max(len(p["points"]) for p in panels) + 1.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, height * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        pts = panel["points"]
        ys = list(range(len(pts)))[::-1]
        for y, p in zip(ys, pts):
            if p["status"] == "ok":
                lo = p["mean"] - p["low"] if p["low"] is not None and math.isfinite(p["low"]) else 0.0
                hi = p["high"] - p["mean"] if p["high"] is not None and math.isfinite(p["high"]) else 0.0
                ax.errorbar(p["mean"], y, xerr=[[lo], [hi]], fmt="o", color="C0", capsize=3)
            else:
                ax.text(0.02, y, p["status"], transform=ax.get_yaxis_transform(), va="center", color="C3",
                        fontsize=8)
            if p["published"] is not None:
                ax.plot(p["published"], y, marker="D", mfc="none", color="C1", linestyle="none")
        ax.set_yticks(ys, [p["label"] for p in pts], fontsize=8)
        ax.set_ylim(-0.7, len(pts) - 0.3)
        ax.set_title(panel["title"], fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def table_plot(table: Table) -> bytes | None:
    return plot_panels(panels_for([table]), suptitle="ours: mean ± 95 % CI over seeds; ◇ published (paper)")


def grid_plot(tables: list[Table], grid: str) -> bytes | None:
    return plot_panels(panels_for(tables, grid), suptitle=f"grid {grid}: mean ± 95 % CI over seeds")
