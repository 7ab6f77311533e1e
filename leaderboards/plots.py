"""Scores with their 95 % CIs per system, as PNG bytes (matplotlib, Agg: no display needed).

One panel per table column: ours as points with t-interval error bars over seeds, the paper's numbers (when a
published row has the same system label) as hollow markers, so a reader sees spread and reference at a glance.
Every figure carries its legend (ours vs published), each axis its unit, and intervals are clipped to the metric's
range (a t-interval over 3 seeds can reach past 100 %, which no score can). Used per table
(embedded in the HTML pages) and per grid (written as PNG, logged on the grid's parent run).
"""

from __future__ import annotations

import io
import math

from leaderboards.spec import published_number
from leaderboards.table import Table

PANELS_PER_ROW = 3
SCORE_RANGE = (0.0, 100.0)  # every leaderboard metric is displayed on a 0-100 scale (accuracy %, BLEU)
OURS_STYLE = {"fmt": "o", "color": "C0", "capsize": 4, "markersize": 6, "elinewidth": 1.6}
PUBLISHED_STYLE = {"marker": "D", "mfc": "none", "color": "C1", "markersize": 7, "linestyle": "none", "mew": 1.6}


def unit_label(label: str, metric: str) -> str:
    """The x-axis label of a panel: the column and its unit."""
    if "bleu" in metric.lower():
        return "BLEU (0-100)" if label.strip().lower() == "bleu" else f"{label} (BLEU, 0-100)"
    return f"{label} (%)"


def clipped(mean: float, low: float | None, high: float | None, bounds=SCORE_RANGE) -> tuple[float, float]:
    """Error-bar lengths (below, above the mean) of the interval [low, high] clipped to the metric's range."""
    lo = min(max(low, bounds[0]), mean) if low is not None and math.isfinite(low) else mean
    hi = max(min(high, bounds[1]), mean) if high is not None and math.isfinite(high) else mean
    return mean - lo, hi - mean


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
            panels.append({"title": f"{t.spec.paper_table} {col.label}".strip(), "points": points,
                           "xlabel": unit_label(col.label, col.metric)})
    return panels


def _x_limits(points: list[dict], bounds=SCORE_RANGE) -> tuple[float, float]:
    """Limits around what is drawn (clipped intervals and published markers), padded, inside the metric's range."""
    values = []
    for p in points:
        if p["status"] == "ok" and p["mean"] is not None:
            below, above = clipped(p["mean"], p["low"], p["high"], bounds)
            values += [p["mean"] - below, p["mean"] + above]
        if p["published"] is not None:
            values.append(float(p["published"]))
    if not values:
        return bounds
    lo, hi = min(values), max(values)
    pad = max(2.0, 0.08 * (hi - lo))
    return max(bounds[0], lo - pad), min(bounds[1], hi + pad)


def plot_panels(panels: list[dict], suptitle: str = "") -> bytes | None:
    if not panels:
        return None
    import matplotlib.pyplot as plt

    fig = figure(panels, suptitle)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def figure(panels: list[dict], suptitle: str = ""):
    """The matplotlib figure of `plot_panels` (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    ncols = min(PANELS_PER_ROW, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    longest = max(len(p["label"]) for panel in panels for p in panel["points"])
    label_in = min(4.0, 0.075 * longest + 0.3)  # room for the system names left of each panel
    width = ncols * (4.6 + label_in)
    height = max(2.6, 0.42 * max(len(p["points"]) for p in panels) + 1.4)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(width, 8.0), height * nrows + 0.6), squeeze=False)
    any_published = False
    for ax, panel in zip(axes.flat, panels):
        pts = panel["points"]
        ys = list(range(len(pts)))[::-1]
        for y, p in zip(ys, pts):
            if p["status"] == "ok":
                below, above = clipped(p["mean"], p["low"], p["high"])
                ax.errorbar(p["mean"], y, xerr=[[below], [above]], **OURS_STYLE)
            else:
                ax.text(0.02, y, p["status"], transform=ax.get_yaxis_transform(), va="center", color="C3",
                        fontsize=9)
            if p["published"] is not None:
                any_published = True
                ax.plot(p["published"], y, **PUBLISHED_STYLE)
        ax.set_yticks(ys, [p["label"] for p in pts], fontsize=9)
        ax.set_ylim(-0.7, len(pts) - 0.3)
        ax.set_xlim(*_x_limits(pts))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, min_n_ticks=4))
        ax.tick_params(axis="x", labelsize=9)
        ax.set_xlabel(panel.get("xlabel", "score (0-100)"), fontsize=9)
        ax.set_title(panel["title"], fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles = [Line2D([], [], marker="o", color="C0", linestyle="-", label="ours: mean, 95 % CI over seeds")]
    if any_published:
        handles.append(Line2D([], [], **{**PUBLISHED_STYLE, "label": "published (paper)"}))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout(rect=(0, 0.06 if nrows == 1 else 0.03, 1, 1))
    return fig


def table_plot(table: Table) -> bytes | None:
    return plot_panels(panels_for([table]), suptitle=f"Table {table.spec.paper_table}: {table.spec.title}"
                       if table.spec.paper_table else table.spec.title)


def grid_plot(tables: list[Table], grid: str) -> bytes | None:
    return plot_panels(panels_for(tables, grid), suptitle=f"grid {grid}")
