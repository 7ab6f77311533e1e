"""optuna-dashboard (the `dashboard` extra, `nox -s dashboard`) opens a search's journal: its REST API lists the
study and its trials as `cvil-bench search` wrote them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from bench.ui import free_port

pytest.importorskip("optuna_dashboard", reason="the optional `dashboard` extra is not installed")


@pytest.mark.slow
def test_dashboard_serves_a_search_journal(tmp_path):
    from bench.search import open_study

    journal = tmp_path / "runs" / "search" / "kd-weights-kd.journal"
    study, _ = open_study("kd-weights-kd", str(journal), seed=0, group=False, startup=1, warmup=0)
    study.optimize(lambda t: t.suggest_float("lambda_12", 0, 1), n_trials=2)
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or "optuna-dashboard"
    port = free_port()
    proc = subprocess.Popen([exe, str(journal), "--port", str(port), "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None and time.monotonic() < deadline:
            assert proc.poll() is None, "optuna-dashboard exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    studies = json.load(r)["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert [s["study_name"] for s in studies] == ["kd-weights-kd"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}", timeout=10) as r:
            detail = json.load(r)
        assert len(detail["trials"]) == 2 and detail["trials"][0]["params"][0]["name"] == "lambda_12"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
