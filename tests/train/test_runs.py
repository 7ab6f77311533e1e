"""Whole runs on the tiny world: schedules end to end, KD, tracking, resume after SIGKILL, DDP equivalence."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cvil.config import load_config
from cvil.train.api import run


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / "model.safetensors"))


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=f"{key} differs")


def test_baseline_schedule_end_to_end_with_mlflow(overrides_for, synthetic_config, tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "baseline"
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(
        out, "tracking.enabled=true", f"tracking.uri={mlflow_store}", "stages.1.epochs=2",
        "tracking.tags.cvil.cell=baseline"))
    metrics = run(cfg)
    assert {"test.accuracy", "test.accuracy_covered", "test.coverage", "test.bleu", "val.accuracy"} <= metrics.keys()
    assert metrics["test.accuracy"] == pytest.approx(metrics["test.accuracy_covered"] * metrics["test.coverage"] / 100)
    for name in ("test_results.json", "test_per_question.csv", "val_results.json"):
        assert (out / "predictions" / name).is_file()
    assert json.loads((out / "stages" / "0-jvg_head" / "selection.json").read_text())["select"] == "val_score"
    from cvil.train import run_layout

    assert {p.name for p in out.iterdir()} - {"run.lock", run_layout.MARKER} <= set(run_layout.OUTPUTS)  # one owner of the layout
    run_info = MlflowClient(mlflow_store).search_runs(
        [MlflowClient(mlflow_store).get_experiment_by_name("cvil").experiment_id])[0]
    assert run_info.info.status == "FINISHED"
    assert run_info.data.tags["cvil.cell"] == "baseline" and run_info.data.tags["cvil.schedule"] == "baseline"
    assert run_info.data.params["stages.1.lr"] == str(cfg.stages[1].lr)
    assert run_info.data.params["effective_batch_size"] == "16"  # data.batch_size 16 x 1 process x grad_accum 1
    assert "train.loss" in run_info.data.metrics and "test.accuracy" in run_info.data.metrics
    # the environment the numbers depend on (cvil.train.run_metadata.environment_tags), read by the leaderboards
    from importlib.metadata import version

    tags = run_info.data.tags
    assert {lib: tags[f"cvil.version.{lib}"] for lib in ("torch", "transformers", "tokenizers", "numpy")} == {
        lib: version(lib) for lib in ("torch", "transformers", "tokenizers", "numpy")}
    assert tags["cvil.threads.intra_op"] == run_info.data.params["train.threads"] == str(cfg.train.threads) == "1"
    assert tags["cvil.threads.inter_op"] == str(torch.get_num_interop_threads())
    assert all(tags[f"cvil.env.{v}"] == os.environ.get(v, "unset") for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))


def test_kd_schedule_lowers_the_kd_loss_and_beats_chance(overrides_for, synthetic_config, tmp_path):
    out = tmp_path / "kd"
    cfg = load_config(synthetic_config("kd.yaml"), overrides_for(out, "stages.0.epochs=4"))
    metrics = run(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kd_val = [r["val.kd_loss"] for r in rows if "val.kd_loss" in r]
    assert len(kd_val) == 4 and kd_val[-1] < kd_val[0]
    per_layer = [r for r in rows if "train.kd.l12.image" in r]
    assert per_layer and {"train.kd.l3.cls", "train.kd.l6.tag", "train.kd.l9.codemix"} <= per_layer[0].keys()
    selection = json.loads((out / "stages" / "0-kd" / "selection.json").read_text())
    assert selection["select"] == "val_kd_loss" and selection["best_value"] == pytest.approx(min(kd_val))
    # Against the untrained student (same init, fresh head, one stage at lr 0: AdamW's decoupled decay scales with
    # lr), by held-out JVG loss: the tiny world has 19 covered val questions, too few for accuracy to tell (that
    # comparison is the grid's, on the small preset).
    untrained = tmp_path / "untrained"
    run(load_config(synthetic_config("baseline.yaml"), overrides_for(
        untrained, "stages=[{name: none, dataset: vg, lang: ja, epochs: 1, lr: 0.0, trainable: head}]")))
    untrained_rows = [json.loads(line) for line in (untrained / "metrics.jsonl").read_text().splitlines()]
    untrained_loss = [r["val.task_loss"] for r in untrained_rows if "val.task_loss" in r][-1]
    kd_student_loss = [r["val.task_loss"] for r in rows if "val.task_loss" in r][-1]
    assert kd_student_loss < 0.5 * untrained_loss
    assert {"val.accuracy", "val.accuracy_covered", "val.coverage"} <= metrics.keys()


def test_kd_ablation_switch_changes_the_loss(overrides_for, synthetic_config, tmp_path):
    cfg = load_config(synthetic_config("ablations/kd_no_image.yaml"),
                      overrides_for(tmp_path / "noimg", "stages=[{name: kd, dataset: vqa, lang: ja, "
                                     "epochs: 1, lr: 5.0e-4, objective: kd, select: val_kd_loss}]", "evaluate=[]"))
    run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "noimg" / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in rows for k in r if k.startswith("train.kd.l")}
    assert logged and not any(k.endswith(".image") for k in logged)


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(golden_run, golden_args, assert_golden_losses, tmp_path):
    straight = golden_run("baseline")  # the uninterrupted run: its losses are pinned in golden_losses.json
    killed = tmp_path / "killed"
    config, overrides = golden_args("baseline", killed)
    args = [sys.executable, "-m", "cvil", "train", "--config", str(config), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            state = torch.load(ckpt, weights_only=True)["progress"]
            if state["stage"] == 1 and state["stage_step"] >= 2:  # inside the second stage
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final").exists()

    run(load_config(config, overrides), resume=True)
    _assert_same_weights(_weights(straight), _weights(killed))
    assert (json.loads((straight / "final_metrics.json").read_text())
            == json.loads((killed / "final_metrics.json").read_text()))
    assert_golden_losses("baseline", killed)  # before the kill and after the resume, replayed steps included


def _ddp_worker(rank: int, world_size: int, init_file: str, config: str, overrides: list[str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    run(load_config(config, overrides), init_method=f"file://{init_file}")


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("config", ["baseline.yaml", "kd.yaml"])
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(overrides_for, synthetic_config, tmp_path,
                                                                         config):
    import torch.multiprocessing as mp

    stages = ("stages=[{name: s, dataset: vqa, lang: ja, epochs: 1, lr: 5.0e-4, objective: kd, select: last}]"
              if config == "kd.yaml" else
              "stages=[{name: s, dataset: vg, lang: ja, epochs: 2, lr: 5.0e-4, select: last}]")
    common = (stages, "data.max_train_examples=96", "evaluate=[]")
    single = tmp_path / "single"
    run(load_config(synthetic_config(config), overrides_for(single, *common, "data.batch_size=16")))
    ddp = tmp_path / "ddp"
    overrides = overrides_for(ddp, *common, "data.batch_size=8")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(synthetic_config(config)), overrides), nprocs=2,
             join=True)
    _assert_same_weights(_weights(single), _weights(ddp), atol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["baseline.yaml", "kd.yaml"])
def test_grad_accum_matches_one_process_with_the_whole_batch(overrides_for, synthetic_config, tmp_path, config):
    """train.grad_accum=2 over micro-batches of 8 trains as batches of 16; with 88 rows an epoch ends with a short
    window (one micro-batch of 8), which is a step of its own, as the single process's last batch of 8."""
    stages = ("stages=[{name: s, dataset: vqa, lang: ja, epochs: 1, lr: 5.0e-4, objective: kd, select: last}]"
              if config == "kd.yaml" else
              "stages=[{name: s, dataset: vg, lang: ja, epochs: 2, lr: 5.0e-4, select: last}]")
    common = (stages, "data.max_train_examples=88", "evaluate=[]")
    whole, accumulated = tmp_path / "whole", tmp_path / "accumulated"
    run(load_config(synthetic_config(config), overrides_for(whole, *common, "data.batch_size=16")))
    run(load_config(synthetic_config(config), overrides_for(accumulated, *common, "data.batch_size=8",
                                                            "train.grad_accum=2")))
    _assert_same_weights(_weights(whole), _weights(accumulated), atol=2e-5)


def test_train_loss_ce_reaches_the_training_loop(overrides_for, synthetic_config, tmp_path):
    """The same first batch on the same initial weights: BCE x num_labels near 0.69 x L, CE near ln L."""
    first = {}
    for loss in ("bce", "ce"):
        out = tmp_path / loss
        run(load_config(synthetic_config("baseline.yaml"), overrides_for(
            out, "stages=[{name: s, dataset: vg, lang: ja, epochs: 1, lr: 5.0e-4, select: last}]", "evaluate=[]",
            "train.log_every=1", f"train.loss={loss}")))
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        first[loss] = next(r["train.loss"] for r in rows if "train.loss" in r)
        assert all(math.isfinite(r["val.task_loss"]) for r in rows if "val.task_loss" in r)
    assert first["ce"] < 0.5 * first["bce"]
