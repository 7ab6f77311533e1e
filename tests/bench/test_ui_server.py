"""A real `mlflow server` (what `cvil-bench ui` runs) on a free loopback port: a grid's child runs and their
metrics are found through its REST API, and stopping it leaves no process of its group behind."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from bench import tracking
from bench.ui import MlflowServer, free_port, register


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.mark.slow
def test_server_exposes_grid_children_over_rest(mlflow_store, tmp_path):
    # a grid as the runner leaves it: one parent, children tagged with cell and seed, final metrics
    c = tracking.client(mlflow_store)
    exp = tracking.experiment_id(c, "cvil")
    parent = tracking.open_parent(c, exp, "grid", "g", tags={})
    for cell, acc in (("KD", 0.6), ("BASELINE", 0.4)):
        run = c.create_run(exp, run_name=f"{cell}-s0", tags={"mlflow.parentRunId": parent, "cvil.grid": "g",
                                                             "cvil.cell": cell, "cvil.seed": "0"})
        c.log_metric(run.info.run_id, "test.accuracy", acc)
        c.set_terminated(run.info.run_id)

    server = MlflowServer(mlflow_store, port=free_port(), log_path=str(tmp_path / "server.log"))
    with server:
        found = _post(f"{server.url}/api/2.0/mlflow/runs/search",
                      {"experiment_ids": [exp], "filter": f"tags.mlflow.parentRunId = '{parent}'"})
        pgid = server.proc.pid
        os.killpg(pgid, 0)  # the group is alive while serving
    by_cell = {}
    for run in found["runs"]:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        by_cell[tags["cvil.cell"]] = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert by_cell == {"KD": {"test.accuracy": 0.6}, "BASELINE": {"test.accuracy": 0.4}}
    with pytest.raises(ProcessLookupError):  # stopped as a group: no orphaned worker left
        os.killpg(pgid, 0)


def test_ui_command_line():
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["ui", "--port", "5055"])
    assert (args.port, args.host) == (5055, "127.0.0.1") and callable(args.func)
    cmd = MlflowServer("sqlite:///x.db", port=5055).command()
    assert cmd[cmd.index("--workers") + 1] == "1" and cmd[cmd.index("--host") + 1] == "127.0.0.1"


@pytest.mark.slow
def test_ui_on_a_taken_port_is_a_one_line_error_naming_it(mlflow_store, capsys, monkeypatch):
    import socket

    from bench.cli import main

    monkeypatch.setattr("bench.ui.signal.signal", lambda *a: None)  # keep pytest's own signal handlers

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["ui", "--port", str(port), "--backend-store-uri", mlflow_store])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith(f"cvil-bench ui: mlflow server on 127.0.0.1:{port} stopped before answering")
    assert f"is port {port} in use" in err and "code 0" not in err and "status 0" not in err
