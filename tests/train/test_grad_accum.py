"""Gradient accumulation (and DDP) equal one process on the whole batch: the loss is normalised over the window.

One batch of 4 examples with unequal KD pair counts per example, on a tiny OscarVQA (no dropout) and a fixed table
of teacher hidden states. The gradient of the whole batch must equal that of 2 micro-batches of 2 (grad_accum=2), 4
of 1 (grad_accum=4) and 2 gloo processes x 2 micro-batches of 1 (grad_accum=2), for every loss the objective has.
Before the window normalisation, 2+2 micro-batches averaged the two micro-batch means (a KD loss of 2.3418 instead
of 2.3383 on the batch of the report).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from cvil.config import KDConfig, StageConfig
from cvil.models.config import oscar_config
from cvil.models.oscar import OscarVQA
from cvil.precision import grad_scaler
from cvil.train.distributed import DistInfo
from cvil.train.model_setup import decay_only_parameters, set_trainable
from cvil.train.objective import TeacherOutputs, build_objective
from cvil.train.step import StepSettings, accumulate

B, T, R, LAYERS, HIDDEN, LABELS = 4, 6, 3, 4, 16, 5
PAIRS = (1, 7, 2, 5)  # KD pairs per example: unequal, so per-micro-batch means differ from the batch mean
KD_KEYS = ("kd_batch", "kd_student_pos", "kd_teacher_pos", "kd_component")
OBJECTIVES = {  # name: (stage, kd, train.loss, train.kd_head)
    "task_bce": (StageConfig(objective="task"), KDConfig(), "bce", "frozen"),
    "task_ce": (StageConfig(objective="task"), KDConfig(), "ce", "frozen"),
    "kd_pooled": (StageConfig(objective="kd"), KDConfig(reduction="pooled"), "bce", "frozen"),
    "kd_pooled_decay_only": (StageConfig(objective="kd"), KDConfig(reduction="pooled"), "bce", "decay_only"),
    "kd_per_component": (StageConfig(objective="kd"), KDConfig(reduction="per_component"), "bce", "frozen"),
    "task+kd_pooled": (StageConfig(objective="task+kd", task_weight=0.5), KDConfig(reduction="pooled"), "bce",
                       "frozen"),
}


def _model() -> OscarVQA:
    torch.manual_seed(0)
    return OscarVQA(oscar_config(img_feature_dim=8, num_labels=LABELS, vocab_size=30, hidden_size=HIDDEN,
                                 num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=32,
                                 max_position_embeddings=16, initializer_range=0.1, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0, attn_implementation="eager"))


def _batch() -> dict:
    g = torch.Generator().manual_seed(1)
    pairs = [(b, int(s), int(t), int(c)) for b, n in enumerate(PAIRS)
             for s, t, c in zip(torch.randint(0, T + R, (n,), generator=g), torch.randint(0, T + R, (n,), generator=g),
                                torch.randint(0, 4, (n,), generator=g))]
    kd = dict(zip(KD_KEYS, (torch.tensor(x) for x in zip(*pairs))))
    labels = torch.rand(B, LABELS, generator=g) * (torch.rand(B, LABELS, generator=g) > 0.5)
    return {"input_ids": torch.randint(1, 30, (B, T), generator=g),
            "token_type_ids": torch.tensor([[0, 0, 0, 1, 1, 1]] * B),
            "attention_mask": torch.ones(B, T + R, dtype=torch.long), "img_feats": torch.randn(B, R, 8, generator=g),
            "labels": labels, "row": torch.arange(B), **kd}


class TableTeacher:
    """Fixed teacher hidden states per example (`batch["row"]`): a teacher whose output does not depend on how the
    batch is split."""

    has_logits = False

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(2)
        self.table = tuple(torch.randn(B, T + R, HIDDEN, generator=g) for _ in range(LAYERS + 1))

    def prepare(self, datasets) -> None:
        pass

    def outputs(self, batch: dict, split: str) -> TeacherOutputs:
        return TeacherOutputs(tuple(t[batch["row"]] for t in self.table), None)


def _split(batch: dict, lo: int, hi: int) -> dict:
    """Examples lo..hi-1 of `batch` as a batch of their own (KD pairs re-indexed)."""
    keep = (batch["kd_batch"] >= lo) & (batch["kd_batch"] < hi)
    part = {k: v[lo:hi] for k, v in batch.items() if k not in KD_KEYS}
    part.update({k: batch[k][keep] for k in KD_KEYS})
    part["kd_batch"] = part["kd_batch"] - lo
    return part


def _micro_batches(batch: dict, *sizes: int) -> list[dict]:
    """`batch` cut into consecutive micro-batches of `sizes` examples (one size: as many of it as fit)."""
    if len(sizes) == 1:
        sizes = (sizes[0],) * (batch["input_ids"].shape[0] // sizes[0])
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    return [_split(batch, lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def _gradients(name: str, batches: list[dict], grad_accum: int, dist_info: DistInfo | None = None) -> dict:
    """The gradients after `accumulate` over `batches`, on a fresh model set up as the trainer does for the stage
    (wrapped in DDP when `dist_info` is given)."""
    from torch.nn.parallel import DistributedDataParallel

    stage, kd, loss, kd_head = OBJECTIVES[name]
    model = _model()
    set_trainable(model, stage, kd, kd_head=kd_head)
    objective = build_objective(stage, kd, TableTeacher(), dist=dist_info, task_loss=loss,
                                zero_grad_params=decay_only_parameters(model, stage, kd, kd_head))
    wrapped = DistributedDataParallel(model) if dist_info is not None else model
    settings = StepSettings(torch.device("cpu"), "fp32", grad_scaler("fp32", torch.device("cpu")), grad_accum)
    accumulate(wrapped, batches, objective, settings)
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys() and want
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6, msg=f"{key} differs")


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("sizes", [(2, 2), (1, 1, 1, 1), (3, 1)], ids=["2+2", "1+1+1+1", "3+1"])
def test_accumulated_micro_batches_give_the_gradient_of_the_whole_batch(name, sizes):
    """(3, 1): an epoch's short last micro-batch; the task loss then differs too when means are averaged."""
    batch = _batch()
    _assert_same(_gradients(name, _micro_batches(batch, *sizes), len(sizes)), _gradients(name, [batch], 1))


def test_a_short_last_window_is_its_own_mean():
    """An epoch's last window may hold fewer micro-batches than grad_accum: it still gives its own batch's mean."""
    batch = _batch()
    _assert_same(_gradients("kd_pooled", _micro_batches(batch, 2), 4), _gradients("kd_pooled", [batch], 1))


def _ddp_worker(rank: int, init_file: str, names: list[str], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        info = DistInfo(rank=rank, world_size=2, local_rank=rank)
        shard = _split(_batch(), 2 * rank, 2 * rank + 2)  # rank 0: 8 KD pairs, rank 1: 7
        grads = {name: _gradients(name, _micro_batches(shard, 1), 2, info) for name in names}
        if rank == 0:
            torch.save(grads, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_with_accumulation_give_the_gradient_of_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    names = sorted(OBJECTIVES)
    out = tmp_path / "grads.pt"
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), names, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    batch = _batch()
    for name in names:
        _assert_same(got[name], _gradients(name, [batch], 1))
