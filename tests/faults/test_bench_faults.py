"""The benchmark layer against a hostile user or a hostile machine: names that would become paths outside the runs
folder, two copies of one grid, a damaged summary or search journal, a search killed mid-trial, and tracking stores
that cannot be used (closed port, corrupt SQLite). Each is one line on stderr (exit 2 for user errors), a repair
that says what it did, or one warning with tracking off and the work going on; never a traceback.

The fake trainer behaves like `cvil train` where it matters here: it holds the run folder's lock, writes
`config.yaml` first and `final_metrics.json` last, makes one MLflow child run only when tracking is on, and records
the MLflow HTTP settings it got (`env.json`) and every command line (`argv.log`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from bench import tracking
from bench.cli import main as bench_main
from bench.grid.runner import GridRunner, _Plan, finished_locally
from bench.grid.spec import Cell, GridSpec, expand, load_grid
from cvil.errors import CvilError, UsageError
from cvil.paths import safe_component

REPO = Path(__file__).resolve().parents[2]
HTTP_KEYS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT")

FAKE_TRAIN = textwrap.dedent(
    r'''
    import json, os, sys
    from pathlib import Path

    from cvil.config import config_hash, load_config, to_yaml
    from cvil.train.run_lock import RunFolderLocked, RunLock

    argv = [a for a in sys.argv[1:] if a not in ("train", "--resume", "--overwrite")]
    config = argv[argv.index("--config") + 1]
    cfg = load_config(config, [a for i, a in enumerate(argv) if "=" in a and argv[i - 1] != "--config"])
    t, out = cfg.tracking, Path(cfg.output_dir)
    try:
        lock = RunLock(out).acquire()
    except RunFolderLocked as exc:
        print(f"cvil train: {exc}", file=sys.stderr)
        sys.exit(2)
    with open(out / "argv.log", "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\n")
    (out / "env.json").write_text(json.dumps({k: os.environ.get(k) for k in os.environ if k.startswith("MLFLOW_")}
                                             | {"tracking.enabled": t.enabled}))
    (out / "config.yaml").write_text(to_yaml(cfg))
    metrics = {"test.accuracy": 0.5 + cfg.train.seed / 100}
    if t.enabled:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(t.uri)
        exp = client.get_experiment_by_name(t.experiment).experiment_id
        run = client.create_run(exp, run_name=t.run_name, tags={"mlflow.parentRunId": t.parent_run_id,
                                "cvil.config_hash": config_hash(cfg), **{k: str(v) for k, v in t.tags.items()}})
        client.log_metric(run.info.run_id, "test.accuracy", metrics["test.accuracy"])
        client.set_terminated(run.info.run_id, "FINISHED")
    (out / "final_metrics.json").write_text(json.dumps(metrics))
    lock.release()
    '''
)


@pytest.fixture
def grid2(tmp_path, monkeypatch):
    """A 2-cell (A, B), 1-seed grid on the fake trainer, in tmp_path (the test's working folder)."""
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    (tmp_path / "base.yaml").write_text("schedule: baseline\n")
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nseeds: 1\ncells:\n  A: {config: base.yaml}\n  B: {config: base.yaml}\n")
    monkeypatch.setenv("CVIL_TRAIN_CMD", f"{sys.executable} {script} train")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return grid


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = bench_main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def _one_line_error(capsys, argv: list[str]) -> str:
    code, _, err = _cli(capsys, argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err.strip()


# ---------------------------------------------------------------------------------------------------------------
# 1. names that become paths


@pytest.mark.parametrize("name", ["../../escape", "..", ".", "/abs", "a\\b", "", "  ", "x\0y", "-rf"])
def test_safe_component_refuses_what_is_not_one_plain_name(name):
    with pytest.raises(UsageError, match="study name"):
        safe_component(name, "study name")
    assert safe_component("kd-weights v2.1", "study name") == "kd-weights v2.1"


KD_BASE = "schedule: kd\nkd: {layers: [3, 6]}\nstages:\n  - {name: kd, objective: kd, epochs: 1}\n"


@pytest.mark.parametrize("name", ["../../escape", "..", "a/b"])
def test_a_study_name_that_is_a_path_is_one_line_and_writes_nothing(name, tmp_path, monkeypatch, capsys):
    """It wrote its journal at runs/search/../../escape.journal, outside the runs folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "kd.yaml").write_text(KD_BASE)
    err = _one_line_error(capsys, ["search", "--config", "kd.yaml", "--no-world", f"--study={name}",
                                   "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"])
    assert f"study name {name!r}" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kd.yaml", "work"]  # nothing written anywhere


@pytest.mark.parametrize("grid_text, named", [
    ("name: g\nseeds: 1\ncells:\n  '..': {config: base.yaml}\n", "cell '..'"),
    ("name: g\nseeds: 1\ncells:\n  '.': {config: base.yaml}\n", "cell '.'"),
    ("name: '..'\nseeds: 1\ncells:\n  A: {config: base.yaml}\n", "grid '..'"),
    ("name: g\nseeds: 1\ncells:\n  w/o CLS: {config: base.yaml}\n  wo CLS: {config: base.yaml}\n", "'wo-CLS'"),
    ("name: g\ncells: {A: {config: base.yaml}\n", "not a readable YAML grid file"),
])
def test_a_grid_or_cell_name_that_leaves_the_grid_folder_is_one_line(grid_text, named, tmp_path, monkeypatch,
                                                                     capsys):
    """A cell named `..` put its output_dir (runs/g/../seed0) outside the grid's folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("schedule: baseline\n")
    (tmp_path / "g.yaml").write_text(grid_text)
    err = _one_line_error(capsys, ["grid", "g.yaml", "--dry-run"])
    assert "g.yaml" in err and named in err
    assert not (tmp_path / "runs").exists()


def test_a_grid_spec_built_in_code_is_checked_too():
    spec = GridSpec(name="g", cells=(Cell("..", "base.yaml"),), seeds=(0,))
    with pytest.raises(CvilError, match="cell '..'"):
        expand(spec)
    with pytest.raises(CvilError, match="grid '..'"):
        GridRunner(GridSpec(name="..", cells=(Cell("A", "base.yaml"),)), echo=lambda line: None)


# ---------------------------------------------------------------------------------------------------------------
# 2. two copies of one grid


class _NoStore:
    """Tracking off: every store call gives its default."""

    on, why_off, http_env = False, "test", {}

    def run(self, fn, default=None):
        return default

    def call(self, method, *args, default=None, **kwargs):
        return default


def test_a_cell_finished_in_its_folder_under_the_same_config_is_not_trained_again(grid2, tmp_path):
    """Checked after the cell's lock is taken, from the run folder alone (works with tracking off)."""
    from cvil.config import config_hash, load_config, to_yaml

    runner = GridRunner(load_grid(str(grid2)), echo=lambda line: None)
    job = expand(runner.spec, seeds=1, cells=("A",))[0]
    digest = config_hash(load_config(job.config, list(job.overrides)))
    out = Path(job.output_dir)
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(to_yaml(load_config(job.config, list(job.overrides))))
    assert runner._claim(_Plan(job, digest), "", _NoStore(), "") is None  # no final_metrics.json: train it
    (out / "final_metrics.json").write_text('{"test.accuracy": 0.7, "note": "x"}')
    result = runner._claim(_Plan(job, digest), "", _NoStore(), "")
    assert (result.status, result.metrics) == ("skipped", {"test.accuracy": 0.7})
    assert finished_locally(out, "another-config") is None  # a changed config is trained again


@pytest.mark.slow
def test_a_second_copy_of_the_grid_finishing_a_cell_meanwhile_is_not_trained_over(grid2, mlflow_store, tmp_path):
    """Grid 2 starts while grid 1 trains A and finishes B; grid 1 then skips B instead of training it again with
    --overwrite (two FINISHED runs, grid 2's folder replaced)."""
    lines: list[str] = []
    runner = GridRunner(load_grid(str(grid2)), uri=mlflow_store, echo=lines.append, poll_s=0.05)
    start = runner._start
    grid_two: list = []

    def start_and_race(p, parent):
        if not grid_two:  # grid 1 is starting A: grid 2 runs now and takes B
            grid_two.extend(GridRunner(load_grid(str(grid2)), uri=mlflow_store, cells=("B",), echo=lines.append,
                                       poll_s=0.05).run())
        return start(p, parent)

    runner._start = start_and_race
    results = runner.run()
    assert [(r.cell, r.status) for r in grid_two] == [("B", "finished")]
    assert {r.cell: r.status for r in results} == {"A": "finished", "B": "skipped"}
    assert {r.cell: r.run_id for r in results}["B"] == grid_two[0].run_id
    c = tracking.client(mlflow_store)
    runs = tracking.search_all(c, tracking.experiment_id(c, "cvil"), tracking.tag_filter({"cvil.cell": "B"}))
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert len((tmp_path / "runs/g/B/seed0/argv.log").read_text().splitlines()) == 1  # trained once
    assert any("skip   B/seed0 (finished meanwhile" in line for line in lines)


# ---------------------------------------------------------------------------------------------------------------
# 3. a damaged summary.json


@pytest.mark.slow
def test_a_truncated_summary_is_rebuilt_not_silently_dropped(grid2, mlflow_store, tmp_path):
    warnings: list[str] = []
    results = GridRunner(load_grid(str(grid2)), uri=mlflow_store, echo=lambda line: None, poll_s=0.05).run()
    b_run = {r.cell: r.run_id for r in results}["B"]
    summary = tmp_path / "runs/g/summary.json"
    text = summary.read_text()
    summary.write_text(text[: len(text) // 2])  # a kill mid-write (before summaries were written atomically)

    GridRunner(load_grid(str(grid2)), uri=mlflow_store, cells=("A",), echo=lambda line: None, poll_s=0.05,
               warn=warnings.append).run()
    rows = {j["cell"]: j for j in json.loads(summary.read_text())["jobs"]}
    assert set(rows) == {"A", "B"} and rows["B"]["run_id"] == b_run and rows["B"]["status"] == "finished"
    assert rows["B"]["metrics"] == {"test.accuracy": 0.5}
    assert len(warnings) == 1 and "runs/g/summary.json could not be read back" in warnings[0]
    assert "rebuilt 1 rows" in warnings[0]
    assert (tmp_path / "runs/g/summary.json.corrupt").read_text() == text[: len(text) // 2]


@pytest.mark.slow
def test_a_garbage_summary_with_tracking_off_is_rebuilt_from_the_run_folders(grid2, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "mlflow.db").write_bytes(b"\x00garbage" * 512)
    assert bench_main(["grid", "g.yaml", "--tracking-uri", uri]) == 0
    (tmp_path / "runs/g/summary.json").write_bytes(b"\xff\xfe{[")
    capsys.readouterr()
    code, _, err = _cli(capsys, ["grid", "g.yaml", "--tracking-uri", uri, "--cells", "A"])
    assert code == 0
    rows = {j["cell"]: j for j in json.loads((tmp_path / "runs/g/summary.json").read_text())["jobs"]}
    assert rows["B"]["status"] == "finished" and rows["B"]["metrics"] == {"test.accuracy": 0.5}
    assert rows["A"]["status"] == "skipped"  # finished in its folder under the same config: not trained again
    assert "summary.json could not be read back" in err and "rebuilt 1 rows" in err


# ---------------------------------------------------------------------------------------------------------------
# 4. a damaged search journal; a search killed mid-trial

KD_SEARCH = textwrap.dedent("""\
    schedule: kd
    kd: {layers: [3, 6, 9, 12]}
    stages:
      - {name: kd, objective: kd, epochs: 3}
      - {name: finetune, objective: task, epochs: 5}
""")


def fake_run(cfg, *, on_eval=None):
    """Stands in for `cvil.train.api.run` (no torch): one child run under the study's parent, one evaluation."""
    t = cfg.tracking
    trial = int(t.tags["cvil.trial"])
    c = tracking.client(t.uri)
    run_id = c.create_run(tracking.experiment_id(c, t.experiment), run_name=t.run_name,
                          tags={"mlflow.parentRunId": t.parent_run_id, **{k: str(v) for k, v in t.tags.items()}}
                          ).info.run_id
    score = 0.5 + sum(cfg.kd.layer_weights) / 100 + trial / 1000
    on_eval("finetune", 10, {"score": score})
    c.set_terminated(run_id, "FINISHED")
    return {"val.accuracy": score}


@pytest.fixture
def search_setup(mlflow_store, tmp_path, monkeypatch):
    import types

    import cvil.train

    stub = types.ModuleType("cvil.train.api")
    stub.run = fake_run
    monkeypatch.setitem(sys.modules, "cvil.train.api", stub)
    monkeypatch.setattr(cvil.train, "api", stub, raising=False)
    (tmp_path / "kd.yaml").write_text(KD_SEARCH)
    return ["search", "--config", "kd.yaml", "--no-world", "--stage-epochs", "0.5", "--study", "s1",
            "--pruner-startup-trials", "1", "--pruner-warmup-evals", "0"]


def _study(tmp_path):
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs/search/s1.journal"))
    return optuna.load_study(study_name="s1", storage=optuna.storages.JournalStorage(journal))


@pytest.mark.parametrize("damage", ["torn_last_line", "flipped_byte"])
def test_a_damaged_search_journal_is_repaired_and_the_search_resumes(damage, search_setup, tmp_path, capsys):
    assert bench_main([*search_setup, "--trials", "2"]) == 0
    journal = tmp_path / "runs/search/s1.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    if damage == "torn_last_line":
        bad = len(lines) - 1
        lines[bad] = lines[bad][: len(lines[bad]) // 2]
    else:
        bad = len(lines) // 2
        lines[bad] = bytes([lines[bad][0] ^ 0x01]) + lines[bad][1:]  # `{` -> `z`
    damaged = b"".join(lines)
    journal.write_bytes(damaged)
    capsys.readouterr()

    code, _, err = _cli(capsys, [*search_setup, "--trials", "3"])
    assert code == 0
    warning = [line for line in err.splitlines() if "journal" in line]
    assert len(warning) == 1 and f"line {bad + 1} of {len(lines)}" in warning[0] and "s1.journal.corrupt" in warning[0]
    assert (tmp_path / "runs/search/s1.journal.corrupt").read_bytes() == damaged
    assert len([t for t in _study(tmp_path).trials if t.state.is_finished()]) >= 3


def test_a_trial_run_left_running_by_a_killed_search_is_closed_killed_on_resume(search_setup, mlflow_store,
                                                                                 tmp_path, capsys):
    """Simulates SIGKILL mid-trial: Optuna's trial RUNNING under a dead worker, its MLflow child run RUNNING."""
    from bench.search import open_study

    study, _ = open_study("s1", str(tmp_path / "runs/search/s1.journal"), seed=0, group=False, startup=1, warmup=0)
    dead = subprocess.Popen(["true"])
    dead.wait()
    study.ask().set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")  # trial 0: its process is gone
    study.ask().set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # trial 1: a live worker's
    c = tracking.client(mlflow_store)
    exp = tracking.experiment_id(c, "cvil")
    parent = tracking.open_parent(c, exp, "search", "s1", tags={})
    orphan, live = (c.create_run(exp, run_name=f"s1-t{n}", tags={"mlflow.parentRunId": parent, "cvil.study": "s1",
                                                                 "cvil.trial": str(n)}).info.run_id for n in (0, 1))

    code, out, _ = _cli(capsys, [*search_setup, "--trials", "1"])
    assert code == 0
    run = c.get_run(orphan)
    assert run.info.status == "KILLED" and "died during trial 0" in run.data.tags["cvil.failure_reason"]
    assert c.get_run(live).info.status == "RUNNING"
    assert f"closed stale RUNNING run {orphan} of trial 0 as KILLED" in out


# ---------------------------------------------------------------------------------------------------------------
# 5. tracking stores that cannot be used


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.mark.slow
@pytest.mark.parametrize("store", ["closed_port", "corrupt_sqlite"])
def test_an_unusable_store_costs_one_warning_and_the_grid_runs(store, grid2, tmp_path, monkeypatch, capsys):
    for key in HTTP_KEYS:  # unset for the test: the grid must apply cvil.tracking's settings itself
        monkeypatch.setenv(key, "x")
        monkeypatch.delenv(key)
    if store == "closed_port":
        uri = _closed_port()
    else:
        (tmp_path / "mlflow.db").write_bytes(b"this is not a database" * 200)
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = _cli(capsys, ["grid", "g.yaml", "--tracking-uri", uri])
    assert code == 0, err
    assert len(err.strip().splitlines()) == 1 and "tracking off" in err and uri in err, err
    summary = json.loads((tmp_path / "runs/g/summary.json").read_text())
    assert summary["counts"] == {"finished": 2, "skipped": 0, "failed": 0}
    assert summary["jobs"][0]["metrics"] == {"test.accuracy": 0.5} and summary["tracking"].startswith("off")
    from cvil.tracking import _HTTP_DEFAULTS

    for cell in ("A", "B"):
        env = json.loads((tmp_path / f"runs/g/{cell}/seed0/env.json").read_text())
        assert env["tracking.enabled"] is False  # the jobs do not wait on the store either
        assert {k: env[k] for k in HTTP_KEYS} == _HTTP_DEFAULTS


def test_a_server_that_never_answers_costs_one_probe(monkeypatch):
    """Accepts connections, never answers: the store is switched off after one probe (PROBE_TIMEOUT_S), where
    MLflow's client with cvil's settings waited 3 x 30 s per call."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    monkeypatch.setattr("cvil.tracking.PROBE_TIMEOUT_S", 0.3)
    try:
        warned: list[str] = []
        store = tracking.Store(f"http://127.0.0.1:{server.getsockname()[1]}", warned.append)
    finally:
        server.close()
    assert not store.on and len(warned) == 1 and "no answer within 0.3 s" in warned[0]
    assert store.run(lambda c: 1 / 0, default="off") == "off"


def test_cvil_train_s_tracker_probes_a_server_that_never_answers_once(monkeypatch):
    """The training side too (issue 26): `MLflowTracker` against such a server cost +94 s before training; now one
    probe, one warning, tracking off, the run goes on."""
    from cvil.tracking import MLflowTracker

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    monkeypatch.setattr("cvil.tracking.PROBE_TIMEOUT_S", 0.3)
    try:
        with pytest.warns(UserWarning, match=r"MLflow tracking disabled .*no answer within 0.3 s"):
            tracker = MLflowTracker(uri=f"http://127.0.0.1:{server.getsockname()[1]}")
    finally:
        server.close()
    assert tracker.run_id is None
    tracker.log_metrics({"a": 1.0}, 1)  # a no-op, not a wait
    tracker.close()


def test_a_corrupt_store_in_the_middle_is_one_warning_not_a_traceback(mlflow_store, tmp_path, caplog):
    warned: list[str] = []
    store = tracking.Store(mlflow_store, warned.append)
    assert store.on
    (tmp_path / "mlflow.db").write_bytes(b"garbage" * 1000)  # deleted and replaced under the running command
    assert store.run(lambda c: tracking.experiment_id(c, "x"), default="none") == "none"
    assert store.call("set_tag", "r", "k", "v") is None
    assert not store.on and len(warned) == 1 and "tracking off" in warned[0]
    assert "Traceback" not in caplog.text
