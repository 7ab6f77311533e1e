"""Retake the README's screenshots (docs/img/) in headless Chromium: the MLflow run list of a grid and the
leaderboard overview. A maintainer's tool, not part of the package: it needs `pip install playwright` and a
Chromium on the PATH (Debian: `apt-get install chromium`; playwright drives it, no browser download).

    python docs/screenshots.py --store sqlite:///mlflow.db --grid demo_ablations

The store should hold a small grid (e.g. a few Table III cells on the tiny world) so the pictures stay legible.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METRICS = ("val.accuracy", "test.accuracy")


def _close_assistant(page) -> None:
    close = page.locator('button[aria-label="Close"]')
    if close.count():
        close.first.click()
        page.wait_for_timeout(500)


def _open(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_timeout(5000)
    _close_assistant(page)
    return page


def _add_column(page, name: str) -> None:
    page.get_by_role("button", name="Columns").click()
    page.wait_for_timeout(500)
    page.keyboard.type(name)
    page.wait_for_timeout(800)
    page.get_by_text(name, exact=True).first.click()
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)


def mlflow_shots(store: str, grid: str, out: Path, browser) -> None:
    from mlflow import MlflowClient

    from bench.ui import MlflowServer, free_port

    exp = MlflowClient(store).get_experiment_by_name("cvil").experiment_id
    context = browser.new_context(viewport={"width": 1500, "height": 720})
    with MlflowServer(store, port=free_port()) as server:
        page = _open(context, f"{server.url}/#/experiments/{exp}/runs")
        page.get_by_text("Model training", exact=True).click()
        page.wait_for_timeout(1500)
        _close_assistant(page)
        page.locator('[role="row"]', has_text=grid).first.locator("button").first.click()  # expand the grid
        page.wait_for_timeout(1000)
        for name in METRICS:
            _add_column(page, name)
        page.screenshot(path=str(out / "mlflow-runs.png"))
        page.close()
        page = _open(context, f"{server.url}/#/experiments/{exp}/runs")  # the README's clicks:
        page.get_by_role("button", name="Group by").click()  # 1. group by cell
        page.wait_for_timeout(800)
        page.keyboard.type("cvil.cell")
        page.wait_for_timeout(800)
        page.locator('[role="menuitemcheckbox"]', has_text="cvil.cell").first.click()
        page.keyboard.press("Escape")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "mlflow-compare-cells.png"))  # 2. the metric columns are kept from above
        page.close()


def leaderboard_shot(out: Path, browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    page.goto((ROOT / "leaderboards" / "rendered" / "index.html").as_uri())
    page.wait_for_timeout(1000)
    page.screenshot(path=str(out / "leaderboard-overview.png"))
    page.close()


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="MLflow store holding the grid")
    parser.add_argument("--grid", required=True, help="the grid's name (its parent run)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            leaderboard_shot(out, browser)
            mlflow_shots(args.store, args.grid, out, browser)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
