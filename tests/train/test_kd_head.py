"""`train.kd_head`: in a pure KD stage the pooler/classifier are frozen (default) or, as the release, kept in the
optimiser with an exact zero gradient so only AdamW's decoupled weight decay moves them (reference §2.7)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cvil.config import KDConfig, StageConfig, TrainConfig, load_config
from cvil.precision import grad_scaler
from cvil.train.api import run
from cvil.train.model_setup import decay_only_parameters, set_trainable
from cvil.train.objective import build_objective
from cvil.train.optim import build_optimizer
from cvil.train.step import StepSettings, accumulate, optimizer_step
from tests.train.test_grad_accum import TableTeacher, _batch, _model

LR, WD, STEPS = 1e-2, 0.5, 5
HEAD = ("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias")


def _kd_steps(kd_head: str):
    stage, kd = StageConfig(objective="kd"), KDConfig()
    model = _model()
    set_trainable(model, stage, kd, kd_head=kd_head)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    objective = build_objective(stage, kd, TableTeacher(),
                                zero_grad_params=decay_only_parameters(model, stage, kd, kd_head))
    optimizer = build_optimizer(model, LR, TrainConfig(weight_decay=WD), torch.device("cpu"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # constant lr: a closed form
    settings = StepSettings(torch.device("cpu"), "fp32", grad_scaler("fp32", torch.device("cpu")))
    grads = {}
    for _ in range(STEPS):
        accumulate(model, [_batch()], objective, settings)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        optimizer_step(optimizer, scheduler, settings)
    return model, before, grads, optimizer


def test_decay_only_shrinks_the_head_by_adamws_weight_decay_alone():
    model, before, grads, optimizer = _kd_steps("decay_only")
    after = dict(model.named_parameters())
    assert all(grads[n].abs().sum() == 0 for n in HEAD)  # a zero gradient, not none
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(after[n]) in in_optimizer for n in HEAD)
    expected = before["classifier.weight"].clone()
    for _ in range(STEPS):  # what AdamW does with a zero gradient: p <- p (1 - lr wd), then + 0
        expected.mul_(1 - LR * WD)
    torch.testing.assert_close(after["classifier.weight"].detach(), expected, rtol=1e-6, atol=0)
    assert after["classifier.weight"].detach().norm() / before["classifier.weight"].norm() == pytest.approx(
        (1 - LR * WD) ** STEPS, rel=1e-6)
    torch.testing.assert_close(after["bert.pooler.dense.weight"].detach(),
                               before["bert.pooler.dense.weight"] * (1 - LR * WD) ** STEPS, rtol=1e-5, atol=0)
    for name in ("classifier.bias", "bert.pooler.dense.bias"):  # no decay on biases: unchanged
        assert torch.equal(after[name].detach(), before[name])
    assert not torch.equal(after["bert.img_embedding.weight"].detach(), before["bert.img_embedding.weight"])


def test_frozen_leaves_the_head_unchanged_and_out_of_the_optimiser():
    model, before, grads, optimizer = _kd_steps("frozen")
    after = dict(model.named_parameters())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for name in HEAD:
        assert torch.equal(after[name].detach(), before[name]) and not after[name].requires_grad
        assert name not in grads and id(after[name]) not in in_optimizer
    assert not torch.equal(after["bert.img_embedding.weight"].detach(), before["bert.img_embedding.weight"])


def test_the_default_is_frozen_and_a_stage_the_loss_reaches_ignores_the_option():
    assert load_config(None, []).train.kd_head == "frozen"
    model = _model()
    for stage in (StageConfig(objective="task"), StageConfig(objective="task+kd"), StageConfig(trainable="head")):
        assert decay_only_parameters(model, stage, KDConfig(), "decay_only") == ()
    assert decay_only_parameters(model, StageConfig(objective="kd"), KDConfig(), "frozen") == ()


def test_a_kd_run_with_decay_only_decays_the_classifier_over_the_linear_schedule(overrides_for, synthetic_config,
                                                                                   tmp_path):
    """The trainer wiring: with lr decaying linearly to 0 over T steps, the step-t lr is lr (T - t) / T."""
    stage = "stages=[{name: kd, dataset: vqa, lang: ja, epochs: 1, lr: 1.0e-2, objective: kd, select: last}]"
    common = (stage, "evaluate=[]", "train.weight_decay=0.5", "data.max_train_examples=64")
    finals = {}
    for head in ("frozen", "decay_only"):
        run_dir = tmp_path / head
        run(load_config(synthetic_config("kd.yaml"), overrides_for(run_dir, *common, f"train.kd_head={head}")))
        finals[head] = load_file(str(run_dir / "final" / "model.safetensors"))
    steps = 4  # 64 rows / batch 16
    factor = 1.0
    for t in range(steps):
        factor *= 1 - 1e-2 * (steps - t) / steps * 0.5
    torch.testing.assert_close(finals["decay_only"]["classifier.weight"],
                               finals["frozen"]["classifier.weight"] * factor, rtol=1e-5, atol=0)
    assert torch.equal(finals["decay_only"]["classifier.bias"], finals["frozen"]["classifier.bias"])
