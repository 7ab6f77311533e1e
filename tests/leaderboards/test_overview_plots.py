"""The overview page (each table's headline rows and plot) and plots worth opening: legend, units, clipped CIs,
readable size and ticks. Uses the committed rendered folder's CSVs as data (leaderboards.from_csv)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from leaderboards import plots, render
from leaderboards.from_csv import rerender, table_from_csv
from leaderboards.spec import SPEC_DIR, load_spec

RENDERED = Path(__file__).resolve().parents[2] / "leaderboards" / "rendered"


def _table(table_id: str):
    return table_from_csv(load_spec(SPEC_DIR / f"{table_id}.yaml"), RENDERED / f"{table_id}.csv")


def _ours(table_id: str, system: str) -> str:
    """The committed Markdown's first value of one of our rows, as printed (without stars): the page must show it."""
    for line in (RENDERED / f"{table_id}.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == ["ours", system]:
            return cells[3].replace("\\*", "").replace("*", "")
    raise AssertionError(f"no ours/{system} row in {table_id}.md")


def _rendered_date() -> str:
    return re.search(r"- Date: (\d{4}-\d{2}-\d{2})", (RENDERED / "table3.md").read_text(encoding="utf-8")).group(1)


def test_intervals_are_clipped_to_the_metric_range():
    assert plots.clipped(99.0, 90.0, 108.0) == (9.0, 1.0)
    assert plots.clipped(2.0, -5.0, 9.0) == (2.0, 7.0)
    assert plots.clipped(50.0, None, float("nan")) == (0.0, 0.0)  # one seed: no interval


def test_figure_has_a_legend_units_clipped_bars_and_enough_ticks():
    panel = {"title": "III Accuracy", "xlabel": plots.unit_label("Accuracy", "test.accuracy"), "points": [
        {"label": "cViL_KD", "mean": 97.0, "low": 86.0, "high": 108.0, "status": "ok", "published": 35.7},
        {"label": "BASELINE", "mean": 30.0, "low": 25.0, "high": 35.0, "status": "ok", "published": None},
        {"label": "w/o CLS", "mean": None, "low": None, "high": None, "status": "missing", "published": 35.6}]}
    fig = plots.figure([panel], "Table III")
    try:
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ours: mean, 95 % CI over seeds",
                                                                     "published (paper)"]
        ax = fig.axes[0]
        assert ax.get_xlabel() == "Accuracy (%)"
        low, high = ax.get_xlim()
        assert 0 <= low and high == 100.0
        bar_ends = [x for coll in ax.collections for seg in coll.get_segments() for x, _ in seg]
        assert max(bar_ends) == pytest.approx(100.0) and min(bar_ends) == pytest.approx(25.0)
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert len(ticks) >= 4
        width, height = fig.get_size_inches() * 110
        assert width >= 880 and height >= 280
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    assert plots.unit_label("BLEU", "test.bleu") == "BLEU (0-100)"


def test_committed_table3_plot_is_readable():
    png = plots.table_plot(_table("table3"))
    import io

    from PIL import Image

    width, height = Image.open(io.BytesIO(png)).size
    assert width >= 880 and height >= 400  # it was 400 x 400 with two ticks


def test_csv_round_trip_shows_the_committed_numbers():
    frame = render.display_frame(_table("table3"))
    md = (RENDERED / "table3.md").read_text(encoding="utf-8")
    for rec in frame.itertuples(index=False):
        assert f"| {render._md(rec[1])} | {rec[2]} | {render._md(rec[3])} |" in md


def test_index_is_an_overview_with_headline_rows_and_plots():
    tables = [_table(t) for t in ("table1a", "table3")]
    page = render.index_html(tables, _rendered_date(), {t.spec.id: plots.table_plot(t) for t in tables})
    assert page.count("<section id=") == 2 and page.count("data:image/png;base64,") == 2
    assert '<h2><a href="table3.html">Table III: Ablations' in page
    assert _ours("table3", "cViL_KD") in page and _ours("table3", "BASELINE") in page  # ours, headline rows
    assert "published (paper)" in page and '<a href="table1a.csv">csv</a>' in page


def test_rerender_from_csvs_rewrites_index_and_plots_only(tmp_path):
    out = tmp_path / "rendered"
    shutil.copytree(RENDERED, out)
    md_before = (out / "table3.md").read_text(encoding="utf-8")
    written = {p.relative_to(out).as_posix() for p in rerender(out)}
    assert {"index.html", "table3.html", "plots/table3_ablations.png"} <= written
    assert (out / "table3.md").read_text(encoding="utf-8") == md_before  # numbers and text untouched
    assert f"Regenerated from the tracking store on {_rendered_date()}" in (out / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_overview_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine")
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'chrome'}", "--dump-dom", (RENDERED / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    tables = len(list(SPEC_DIR.glob("*.yaml")))  # every committed table has its section and plot
    assert dom.count("<section id=") == tables and dom.count("<img") == tables
    assert "Table III: Ablations of the distillation objectives" in dom and _ours("table3", "cViL_KD") in dom
