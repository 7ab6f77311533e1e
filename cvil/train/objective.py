"""The loss a stage optimises, decided once per stage: task loss, KD over aligned hidden states, or a weighted sum.

`build_objective(stage, kd, teacher)` answers the questions every caller used to ask for itself (does the stage
distil? with what weights? which teacher?). The teacher is a `TeacherSource`: the online `FrozenTeacher`
(`OnlineTeacher`) or the offline cache (`CachedTeacher`), which is opened per split with its identity checks: the
question ids of the dataset it serves and the hash of the configured teacher's config (`cvil.distill.teacher_cache`).

One optimizer step averages over a `LossWindow`: every micro-batch of the gradient-accumulation window on every
rank. Each term is rescaled by its micro-batch's share of the window (examples, or selected KD pairs for the pooled
KD mean), so `grad_accum` micro-batches on N processes give the gradient of one process on the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from cvil.config import ConfigError, KDConfig, RunConfig, StageConfig
from cvil.distill.kd_losses import KDLoss, distillation_loss, teacher_logit_loss
from cvil.distill.teacher import FrozenTeacher
from cvil.models.oscar import TASK_LOSSES
from cvil.train.distributed import DistInfo, all_reduce_sum


class TeacherOutputs(NamedTuple):
    hidden_states: tuple  # HF order, index 0 = embeddings (cache: `None` where a layer is not cached)
    logits: torch.Tensor | None  # None from the cache (it holds no logits)


class TeacherSource(Protocol):
    """Where a KD batch's teacher side comes from."""

    has_logits: bool

    def prepare(self, datasets: dict[str, Any]) -> None:
        """Called with a stage's {split: dataset} before the stage reads `outputs` for those splits."""

    def outputs(self, batch: dict, split: str) -> TeacherOutputs: ...


class OnlineTeacher:
    """The frozen teacher run on every batch (eval mode, no autograd)."""

    has_logits = True

    def __init__(self, teacher: FrozenTeacher) -> None:
        self.teacher = teacher

    def prepare(self, datasets: dict[str, Any]) -> None:
        pass

    def outputs(self, batch: dict, split: str) -> TeacherOutputs:
        out = self.teacher(batch)
        return TeacherOutputs(out.hidden_states, out.logits)


class CachedTeacher:
    """`kd.teacher_cache`: one verified `TeacherCache` per split under `root` (`root/train`, `root/val`)."""

    has_logits = False

    def __init__(self, root: str | Path, layers: tuple[int, ...], *, teacher_config: Any = None) -> None:
        self.root, self.layers, self.teacher_config = Path(root), tuple(layers), teacher_config
        self._caches: dict[str, tuple[frozenset, Any]] = {}

    def prepare(self, datasets: dict[str, Any]) -> None:
        from cvil.distill.teacher_cache import TeacherCache

        for split, dataset in datasets.items():
            ids = frozenset(int(q) for q in dataset.question_ids)
            if split in self._caches and self._caches[split][0] == ids:
                continue  # already opened and checked for exactly these questions
            cache = TeacherCache(self.root / split, expected_question_ids=ids, teacher_config=self.teacher_config,
                                 expected_row_keys=getattr(dataset, "row_identity", None))
            self._caches[split] = (ids, cache)

    def outputs(self, batch: dict, split: str) -> TeacherOutputs:
        if split not in self._caches:
            raise RuntimeError(f"teacher cache for split {split!r} not opened (CachedTeacher.prepare first)")
        return TeacherOutputs(self._caches[split][1].hidden_states_for(batch, layers=self.layers), None)


def teacher_source(cfg: RunConfig, device: torch.device, precision: str) -> TeacherSource | None:
    """The run's teacher: None when no stage distils, the cache when `kd.teacher_cache` is set, else online."""
    from cvil.train import model_setup

    if not any(s.distils for s in cfg.stages):
        return None
    if cfg.kd.teacher_cache:
        if cfg.kd.logit_weight:
            raise ConfigError("kd.logit_weight needs the online teacher: a teacher cache holds no logits")
        return CachedTeacher(cfg.kd.teacher_cache, tuple(cfg.kd.layers),
                             teacher_config=_teacher_config(cfg.kd.teacher) if cfg.kd.teacher else None)
    teacher = model_setup.load_teacher(cfg, device)
    return OnlineTeacher(FrozenTeacher(torch.compile(teacher) if cfg.train.compile else teacher, precision=precision))


def _teacher_config(path: str):
    """The configured teacher's model config, as the cache builder hashed it (`teacher_cache.config_hash`)."""
    from cvil.models.config import config_from_dict, read_config_json

    return config_from_dict(read_config_json(path))


@dataclass(frozen=True)
class LossWindow:
    """What one optimizer step averages over: every micro-batch of the accumulation window, on every rank.

    `examples` and `kd_pairs` are totals over the window; `terms` is the number of per-micro-batch losses the
    gradient is divided over: `grad_accum` (the step divides each micro-batch's loss by it) × the world size (DDP
    averages the ranks' gradients). A micro-batch holding `local` of a window's `total` items then weighs its mean
    by `local × terms / total`, and the divisions give Σ (local mean × local) / total: the mean over the whole
    window, whatever the micro-batch sizes or KD pair counts (a short last window of an epoch included). (The
    reference's DataParallel averaged the unequal per-replica means, and divided each micro-batch's mean by accum.)
    """

    examples: float
    kd_pairs: float
    terms: int = 1

    def share(self, local: float, total: float) -> float:
        return local * self.terms / max(total, 1.0)


@dataclass(frozen=True)
class StageObjective:
    """A stage's loss; `loss(out, batch)` returns the total (fp32) and, when `detail`, its parts as floats."""

    distils: bool
    task_weight: float
    kd_weight: float
    kd: KDConfig
    teacher: TeacherSource | None = None
    projection: nn.Module | None = None  # the student's KD projection (`kd.projection: linear`)
    dist: DistInfo | None = None  # for the window totals over ranks (`window`)
    task_loss: str = "bce"  # `train.loss` (cvil.models.oscar.TASK_LOSSES)
    # `train.kd_head: decay_only`: parameters no loss term reaches, given an exact zero gradient (× 0 in the graph,
    # as the release's `loss += 0 * BCE`), so AdamW decays them and DDP sees a gradient for every parameter
    zero_grad_params: tuple[nn.Parameter, ...] = ()

    def task(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task loss (`train.loss`), a mean over the batch's examples, in fp32."""
        return TASK_LOSSES[self.task_loss](logits.float(), labels)

    def window(self, batches: list[dict], grad_accum: int = 1) -> LossWindow:
        """The `LossWindow` of one optimizer step made of `batches` (this rank's micro-batches), with `grad_accum`
        the divisor the step applies to each micro-batch's loss. Under DDP the totals are summed over ranks (one
        collective per step)."""
        counts = torch.tensor([float(sum(b["input_ids"].shape[0] for b in batches)),
                               float(sum(b["kd_batch"].numel() for b in batches if "kd_batch" in b))],
                              dtype=torch.float64)
        world = 1
        if self.dist is not None and self.dist.enabled:
            all_reduce_sum(counts)
            world = self.dist.world_size
        return LossWindow(examples=counts[0].item(), kd_pairs=counts[1].item(), terms=grad_accum * world)

    def loss(self, out, batch: dict, *, split: str = "train", detail: bool = False,
             window: LossWindow | None = None) -> tuple[torch.Tensor, dict]:
        """The micro-batch's loss, each term weighted by the micro-batch's share of `window` (no weighting without
        one: the batch's own means, as evaluation wants). The logged parts are the unweighted means."""
        parts: dict[str, float] = {}
        total = torch.zeros((), device=out.logits.device)
        plain = 0.0
        examples = pairs = 1.0
        if window is not None:
            examples = window.share(batch["input_ids"].shape[0], window.examples)
            if self.distils:
                pairs = window.share(batch["kd_batch"].numel(), window.kd_pairs)
        if self.task_weight:
            task = self.task(out.logits, batch["labels"])
            total = total + self.task_weight * task * examples
            if detail:
                parts["loss.task"] = float(task.detach())
                plain += self.task_weight * parts["loss.task"]
        if self.distils:
            teacher = self.teacher.outputs(batch, split)
            kd = self.distillation(out, batch, teacher, detail=detail)
            # the pooled KD term is a mean over selected pairs, per_component a mean over examples
            total = total + self.kd_weight * kd.total * (pairs if self.kd.reduction == "pooled" else examples)
            if detail:
                parts["loss.kd"] = float(kd.total.detach())
                plain += self.kd_weight * parts["loss.kd"]
                parts.update({f"kd.layer{k}": v for k, v in kd.per_layer.items()})
                parts.update({f"kd.{k}": v for k, v in kd.per_component.items()})
            if self.kd.logit_weight:
                logit = teacher_logit_loss(out.logits, teacher.logits)
                total = total + self.kd.logit_weight * logit * examples
                if detail:
                    parts["loss.kd_logits"] = float(logit.detach())
                    plain += self.kd.logit_weight * parts["loss.kd_logits"]
        if self.zero_grad_params:
            total = total + 0.0 * sum(p.sum() for p in self.zero_grad_params)
        if detail:
            parts["loss"] = plain
        return total, parts

    def distillation(self, out, batch: dict, teacher: TeacherOutputs, *, detail: bool = False) -> KDLoss:
        """The hidden-state KD term alone (what the held-out KD loss of the in-loop evaluation reports)."""
        return distillation_loss(out.hidden_states, teacher.hidden_states, batch, layers=self.kd.layers,
                                 weights=self.kd.layer_weights, reduction=self.kd.reduction, detail=detail,
                                 projection=self.projection)


def build_objective(stage: StageConfig, kd: KDConfig, teacher: TeacherSource | None, *,
                    projection: nn.Module | None = None, dist: DistInfo | None = None, task_loss: str = "bce",
                    zero_grad_params: tuple[nn.Parameter, ...] = ()) -> StageObjective:
    if stage.distils and teacher is None:
        raise ValueError(f"stage {stage.name!r} distils but no teacher source was given")
    if task_loss not in TASK_LOSSES:
        raise ConfigError(f"train.loss: {task_loss!r} is not one of {', '.join(map(repr, TASK_LOSSES))}")
    return StageObjective(distils=stage.distils, task_weight=stage.task_loss_weight, kd_weight=stage.kd_weight, kd=kd,
                          teacher=teacher if stage.distils else None, projection=projection, dist=dist,
                          task_loss=task_loss, zero_grad_params=tuple(zero_grad_params))
