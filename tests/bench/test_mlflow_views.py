"""MLflow's views agree with cvil's: the UI's deep link opens the model-training layout, a re-run's replaced seed
runs are marked (or trashed) and skipped by every reader, `cvil-bench compare` reports percent and names systems
by their runs, and a search names its objective, records what it searched and says when every trial tied."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import runs as run_store
from bench.replaced import retire_replaced
from bench.ui import experiment_link, experiment_links
from cvil import tracking_schema as schema

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------------ ui link


def test_the_ui_link_opens_the_experiment_in_the_model_training_layout(mlflow_store):
    from mlflow import MlflowClient

    assert experiment_link("http://127.0.0.1:5000", "7") == \
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    filtered = experiment_link("http://127.0.0.1:5000/", "7", schema.ACTIVE_RUNS_FILTER)
    assert filtered.startswith("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning&searchFilter=")
    assert "tags.%60cvil.replaced_by%60%20IS%20NULL" in filtered
    assert "has no runs yet" in experiment_links("http://h:1", mlflow_store, "cvil")[0]
    exp = MlflowClient(mlflow_store).create_experiment("cvil")
    first, second = experiment_links("http://h:1", mlflow_store, "cvil")
    assert first == f"experiment 'cvil': http://h:1/#/experiments/{exp}/runs?workflowType=machine_learning"
    assert "IS NULL" in second and "searchFilter=" in second


def test_the_readme_gives_the_deep_link_and_the_filter():
    text = (HERE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "?workflowType=machine_learning" in text and "tags.`cvil.replaced_by` IS NULL" in text


# ---------------------------------------------------------------------------------------------- replaced runs


def _child(c, exp, parent, cell, seed, *, status="FINISHED", accuracy=50.0):
    rid = c.create_run(exp, tags={schema.GRID: "g", schema.CELL: cell, schema.SEED: str(seed),
                                  schema.PARENT_RUN: parent}).info.run_id
    c.log_metric(rid, "test.accuracy", accuracy)
    c.set_terminated(rid, status)
    return rid


@pytest.mark.parametrize("mode", ["tag", "delete"])
def test_a_replaced_seed_run_is_marked_or_trashed_and_no_reader_counts_it(mode, mlflow_store):
    from bench import tracking

    c = run_store.client(mlflow_store)
    exp = c.create_experiment("cvil")
    parent = c.create_run(exp, tags={schema.KIND: "grid", schema.GRID: "g"}).info.run_id
    old = _child(c, exp, parent, "BASELINE", 1, accuracy=10.0)
    other_seed = _child(c, exp, parent, "BASELINE", 2, accuracy=30.0)
    new = _child(c, exp, parent, "BASELINE", 1, accuracy=20.0)
    runs = tracking.children(c, exp, parent, {schema.CELL: "BASELINE", schema.SEED: "1"})
    assert retire_replaced(c, runs, new, mode=mode) == [old]
    found = run_store.find_runs(c, grid="g", cell="BASELINE")
    assert sorted(r.run_id for r in found) == sorted([new, other_seed])  # what compare and the leaderboards read
    if mode == "tag":
        assert c.get_run(old).data.tags[schema.REPLACED_BY] == new and c.get_run(old).info.lifecycle_stage == "active"
    else:
        assert c.get_run(old).info.lifecycle_stage == "deleted"
    # the UI's suggested filter shows the same runs: one per seed
    shown = c.search_runs([exp], filter_string=f"tags.`{schema.CELL}` = 'BASELINE' AND {schema.ACTIVE_RUNS_FILTER}")
    assert sorted(r.info.run_id for r in shown) == sorted([new, other_seed])
    # a re-run back to the old config skips to the old run: it is the valid one again, the newer one is replaced
    if mode == "tag":
        runs = tracking.children(c, exp, parent, {schema.CELL: "BASELINE", schema.SEED: "1"})
        assert retire_replaced(c, runs, old) == [new]
        assert schema.REPLACED_BY not in c.get_run(old).data.tags
        assert c.get_run(new).data.tags[schema.REPLACED_BY] == old


def _fake_train() -> str:
    spec = importlib.util.spec_from_file_location("_grid_tests", HERE / "test_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FAKE_TRAIN


@pytest.mark.slow
def test_a_grid_rerun_of_a_cell_marks_the_seed_run_it_replaces(mlflow_store, tmp_path, monkeypatch):
    """`cvil-bench grid ... --cells BASELINE --seeds 1` after a config change: 'Group by cvil.cell' (with the filter)
    and compare see one run per seed, as the leaderboards do."""
    from bench.grid.runner import GridRunner
    from bench.grid.spec import load_grid

    script = tmp_path / "fake_train.py"
    script.write_text(_fake_train())
    (tmp_path / "base.yaml").write_text("schedule: baseline\ntrain: {seed: 7}\n")
    grid = tmp_path / "g.yaml"
    grid.write_text(textwrap.dedent("""\
        name: g
        seeds: 1
        cells:
          BASELINE: {config: base.yaml}
    """))
    monkeypatch.setenv("CVIL_TRAIN_CMD", f"{sys.executable} {script} train")
    lines: list[str] = []
    first = GridRunner(load_grid(str(grid)), uri=mlflow_store, runs_dir=str(tmp_path / "runs"),
                       echo=lines.append).run()
    second = GridRunner(load_grid(str(grid)), uri=mlflow_store, runs_dir=str(tmp_path / "runs"), cells=("BASELINE",),
                        overrides=("data.batch_size=8",),
                        echo=lines.append).run()
    assert first[0].run_id != second[0].run_id and second[0].status == "finished"
    c = run_store.client(mlflow_store)
    assert c.get_run(first[0].run_id).data.tags[schema.REPLACED_BY] == second[0].run_id
    assert [r.run_id for r in run_store.find_runs(c, grid="g", cell="BASELINE")] == [second[0].run_id]
    assert any(f"marked run {first[0].run_id} of BASELINE/seed{first[0].seed} as replaced by {second[0].run_id}"
               in ln for ln in lines), lines


def test_grid_cli_offers_the_replaced_run_choice():
    from bench.grid.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["grid", "g"]).replaced == "tag"  # the default: nothing is deleted
    assert parser.parse_args(["grid", "g", "--replaced", "delete"]).replaced == "delete"


# ------------------------------------------------------------------------------------------------ compare


def _csv(path: Path, scores) -> Path:
    n = len(scores)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"question_id": range(n), "prediction": ["a"] * n, "ground_truth": ["a"] * n,
                  "score": scores, "question_type": ["other"] * n}).to_csv(path, index=False)
    return path


def test_compare_reports_percent_and_names_systems_by_their_runs(tmp_path, capsys):
    from bench.cli import main

    rng = np.random.default_rng(0)
    runs = tmp_path / "runs" / "demo" / "small"
    a = _csv(runs / "baseline" / "seed1" / "predictions" / "test_per_question.csv", rng.binomial(1, 0.2, 200) * 1.0)
    b = _csv(runs / "aug" / "seed1" / "predictions" / "test_per_question.csv", rng.binomial(1, 0.4, 200) * 1.0)
    (runs / "aug" / "seed1" / "config.yaml").write_text("tracking: {run_name: demo-small-aug-s1}\n")
    assert main(["compare", str(a), str(b), "--n-resamples", "199", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unit"] == "%"
    assert [s["name"] for s in report["systems"]] == ["baseline/seed1", "demo-small-aug-s1"]
    mean_a = report["systems"][0]["mean"]
    assert mean_a == pytest.approx(100 * pd.read_csv(a)["score"].mean())  # percent, not a fraction
    assert 10 < report["comparison"]["delta"] < 40
    assert main(["compare", str(a), str(b), "--n-resamples", "199"]) == 0
    text = capsys.readouterr().out
    assert "metric: accuracy (in %)   A = baseline/seed1   B = demo-small-aug-s1" in text
    assert f"{mean_a:.2f}" in text and "test_per_question" not in text.split("source")[0]


def test_compare_names_a_run_id_by_its_run_name(mlflow_store, tmp_path, capsys):
    from mlflow import MlflowClient

    from bench.cli import main

    c = MlflowClient(mlflow_store)
    exp = c.create_experiment("cvil", artifact_location=str(tmp_path / "art"))
    ids = []
    for name, p in (("demo-small-baseline-s1", 0.2), ("demo-small-aug-s1", 0.4)):
        rid = c.create_run(exp, run_name=name, tags={"cvil.cell": "x", "cvil.seed": "1"}).info.run_id
        c.log_artifact(rid, str(_csv(tmp_path / rid / "test_per_question.csv",
                                     np.random.default_rng(1).binomial(1, p, 60) * 1.0)), "predictions")
        ids.append(rid)
    assert main(["compare", *ids, "--tracking-uri", mlflow_store, "--n-resamples", "99", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [s["name"] for s in json.loads(out)["systems"]] == ["demo-small-baseline-s1", "demo-small-aug-s1"]
    assert "Downloading artifacts" not in err  # no progress bars in the report


# ------------------------------------------------------------------------------------------------ search


def _same_score_run(cfg, *, on_eval=None):
    on_eval("kd", 10, {"score": 42.0, "task_loss": 1.0})  # percent, as the trainer reports val.score
    return {"val.accuracy": 42.0}


def test_a_search_names_its_objective_records_its_setup_and_warns_on_a_tie(mlflow_store, tmp_path, monkeypatch,
                                                                          capsys):
    import types

    import optuna

    import cvil.train
    from bench.search import register

    stub = types.ModuleType("cvil.train.api")
    stub.run = _same_score_run
    monkeypatch.setitem(sys.modules, "cvil.train.api", stub)
    monkeypatch.setattr(cvil.train, "api", stub, raising=False)
    config = tmp_path / "kd.yaml"
    config.write_text("schedule: kd\nkd: {layers: [3, 6]}\nstages:\n  - {name: kd, objective: kd, epochs: 1}\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["search", "--config", str(config), "--trials", "3", "--no-world", "--study", "tie",
                              "--runs-dir", str(tmp_path / "runs"), "--tracking-uri", mlflow_store,
                              "--pruner-startup-trials", "10", "--seed", "3"])
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "warning: all 3 completed trials scored val.accuracy=42.0000" in err and "best only by order" in err
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="tie", storage=optuna.storages.JournalStorage(
        JournalFileBackend(str(tmp_path / "runs" / "search" / "tie.journal"))))
    assert study.metric_names == ["val.accuracy"]
    attrs = study.user_attrs
    assert attrs["config"] == str(config) and attrs["seed"] == 3 and attrs["world"].startswith("config paths")
    assert "%" in attrs["objective"] and "%" in attrs["intermediate"]
    assert study.trials[0].intermediate_values == {0: 42.0}  # percent, like the objective
    assert "value_val.accuracy" in pd.read_csv(tmp_path / "runs" / "search" / "tie" / "trials.csv").columns
