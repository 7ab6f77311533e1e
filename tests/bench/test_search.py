"""The KD-weight search with a fake in-process trainer: pruning through `on_eval`, MLflow children, best config,
resume. `cvil.train.api` is replaced by a stub module (so the test imports no torch)."""

from __future__ import annotations

import argparse
import sys
import textwrap
import types

import optuna
import pytest

import cvil.train
from bench import tracking
from bench.search import LayerSpace, metric_of, register
from cvil.config import load_config
from cvil.errors import StopTrial

BASE = textwrap.dedent("""\
    schedule: kd
    kd: {layers: [3, 6, 9, 12]}
    stages:
      - {name: kd, objective: kd, epochs: 3}
      - {name: finetune, objective: task, epochs: 5}
""")


def fake_run(cfg, *, on_eval=None):
    """Mimics `cvil.train.api.run`: a child run under the study's parent, evaluations, final metrics.

    Trial 0 scores well; later trials score badly from their first task evaluation, so the median pruner
    (one startup trial, no warm-up) stops them there.
    """
    t = cfg.tracking
    trial = int(t.tags["cvil.trial"])
    assert [s.epochs for s in cfg.stages] == [0.5, 0.5]  # the short budget
    c = tracking.client(t.uri)
    run_id = c.create_run(tracking.experiment_id(c, t.experiment), run_name=t.run_name,
                          tags={"mlflow.parentRunId": t.parent_run_id, **{k: str(v) for k, v in t.tags.items()}}
                          ).info.run_id
    score = 0.5 + 0.1 * sum(cfg.kd.layer_weights) / len(cfg.kd.layer_weights) if trial == 0 else 0.1
    try:
        on_eval("kd", 10, {"kd_loss": 0.3})  # no task score in this evaluation: nothing to report
        for i, step in enumerate((20, 40)):
            on_eval("finetune", step, {"score": score * (i + 1) / 2, "task_loss": 1.0})
    except StopTrial:  # what cvil.train.api.run does with it: close the run as KILLED, re-raise
        c.set_terminated(run_id, "KILLED")
        raise
    c.log_metric(run_id, "val.accuracy", 100 * score)
    c.set_terminated(run_id, "FINISHED")
    return {"val.accuracy": 100 * score, "test.accuracy": 100 * score - 5}


@pytest.fixture
def stub_api(monkeypatch):
    stub = types.ModuleType("cvil.train.api")
    stub.run = fake_run
    monkeypatch.setitem(sys.modules, "cvil.train.api", stub)
    monkeypatch.setattr(cvil.train, "api", stub, raising=False)
    return stub


def _search(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["search", *argv])
    return args.func(args)


def test_search_prunes_logs_children_writes_best_config_and_resumes(stub_api, mlflow_store, tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "kd.yaml").write_text(BASE)
    argv = ["--config", "configs/kd.yaml", "--no-world", "--stage-epochs", "0.5", "--study", "s1",
            "--pruner-startup-trials", "1", "--pruner-warmup-evals", "0", "--best-out", "configs/searched/best.yaml",
            "data.batch_size=4", "stages.1.lr=0.0001"]
    assert _search([*argv, "--trials", "3"]) == 0

    journal = str(tmp_path / "runs/search/s1.journal")
    study = optuna.load_study(study_name="s1", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(journal)))
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "PRUNED"]
    assert [t.last_step for t in study.trials[1:]] == [0, 0]  # pruned at their first task evaluation
    best = study.best_trial
    assert set(best.params) == {"lambda_3", "lambda_6", "lambda_9", "lambda_12"}

    # the best weights as a config that extends the base one and sets only kd.layers / kd.layer_weights
    text = (tmp_path / "configs/searched/best.yaml").read_text()
    assert text.startswith("# Best KD layer weights") and "extends: ../kd.yaml" in text
    cfg = load_config(tmp_path / "configs/searched/best.yaml")
    assert cfg.kd.layers == (3, 6, 9, 12) and [s.epochs for s in cfg.stages] == [3.0, 5.0]
    assert cfg.kd.layer_weights == pytest.approx([best.params[f"lambda_{m}"] for m in (3, 6, 9, 12)], abs=1e-6)
    # ... and carries the search's overrides, so it runs as written: the best trial's config at the full budget
    trial_cfg = load_config(tmp_path / "configs/kd.yaml", ["data.batch_size=4", "stages.1.lr=0.0001",
                                                           f"kd.layer_weights={list(cfg.kd.layer_weights)}"])
    assert cfg == trial_cfg and cfg.data.batch_size == 4 and cfg.stages[1].lr == 1e-4

    # MLflow: one parent per study, one child per trial with the lambdas, the state and the objective
    c = tracking.client(mlflow_store)
    exp = tracking.experiment_id(c, "cvil")
    parents = tracking.search_all(c, exp, tracking.tag_filter({"cvil.kind": "search", "cvil.search": "s1"}))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["best.objective"] == pytest.approx(best.value)
    kids = {int(r.data.tags["cvil.trial"]): r for r in tracking.children(c, exp, parents[0].info.run_id)}
    assert sorted(kids) == [0, 1, 2]
    assert kids[0].data.tags["optuna.state"] == "COMPLETE" and kids[0].data.metrics["objective"] == best.value
    assert float(kids[0].data.params["lambda_9"]) == pytest.approx(best.params["lambda_9"], abs=1e-6)
    assert kids[1].data.tags["optuna.state"] == "PRUNED" and kids[1].info.status == "KILLED"
    assert "trial 1 PRUNED" in capsys.readouterr().out

    # resume: the same command with a larger budget adds trials to the same study and the same parent run
    assert _search([*argv, "--trials", "4"]) == 0
    study = optuna.load_study(study_name="s1", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(journal)))
    assert len(study.trials) == 4
    # the resumed process proposes a new point, not trial 0's again (the sampler is not re-seeded identically)
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == 4, points
    again = tracking.search_all(c, exp, tracking.tag_filter({"cvil.kind": "search", "cvil.search": "s1"}))
    assert [p.info.run_id for p in again] == [parents[0].info.run_id]
    assert len(tracking.children(c, exp, parents[0].info.run_id)) == 4


def test_layer_space_with_layer_selection_keeps_the_top_layer():
    space = LayerSpace((3, 6, 9, 12), search_layers=True)
    fixed = optuna.trial.FixedTrial({"use_layer_3": False, "use_layer_6": True, "use_layer_9": False,
                                     "lambda_6": 0.2, "lambda_12": 0.7})
    assert space.suggest(fixed) == ((6, 12), (0.2, 0.7))
    plain = optuna.trial.FixedTrial({"lambda_3": 1.0, "lambda_6": 0.0, "lambda_9": 0.5, "lambda_12": 0.25})
    assert LayerSpace((3, 6, 9, 12)).suggest(plain) == ((3, 6, 9, 12), (1.0, 0.0, 0.5, 0.25))


def test_metric_lookup_wants_a_finite_number():
    assert metric_of({"score": 0.4}, "score") == 0.4
    assert metric_of({"kd_loss": 0.3}, "score") is None
    assert metric_of({"score": float("nan")}, "score") is None
