"""The loss a stage optimises, decided once per stage: task BCE, KD over aligned hidden states, or a weighted sum.

`build_objective(stage, kd, teacher)` answers the questions every caller used to ask for itself (does the stage
distil? with what weights? which teacher?). The teacher is a `TeacherSource`: the online `FrozenTeacher`
(`OnlineTeacher`) or the offline cache (`CachedTeacher`), which is opened per split with its identity checks: the
question ids of the dataset it serves and the hash of the configured teacher's config (`cvil.distill.teacher_cache`).
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
from cvil.models.oscar import instance_bce_with_logits
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
            cache = TeacherCache(self.root / split, expected_question_ids=ids, teacher_config=self.teacher_config)
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
class StageObjective:
    """A stage's loss; `loss(out, batch)` returns the total (fp32) and, when `detail`, its parts as floats."""

    distils: bool
    task_weight: float
    kd_weight: float
    kd: KDConfig
    teacher: TeacherSource | None = None
    projection: nn.Module | None = None  # the student's KD projection (`kd.projection: linear`)
    dist: DistInfo | None = None  # for the DDP rescaling of the pooled KD mean (`pooled_share`)

    def loss(self, out, batch: dict, *, split: str = "train", detail: bool = False) -> tuple[torch.Tensor, dict]:
        parts: dict[str, float] = {}
        total = torch.zeros((), device=out.logits.device)
        if self.task_weight:
            task = instance_bce_with_logits(out.logits.float(), batch["labels"])
            total = total + self.task_weight * task
            if detail:
                parts["loss.task"] = float(task.detach())
        if self.distils:
            teacher = self.teacher.outputs(batch, split)
            kd = self.distillation(out, batch, teacher, detail=detail)
            total = total + self.kd_weight * kd.total * self.pooled_share(batch)
            if detail:
                parts["loss.kd"] = float(kd.total.detach())
                parts.update({f"kd.layer{k}": v for k, v in kd.per_layer.items()})
                parts.update({f"kd.{k}": v for k, v in kd.per_component.items()})
            if self.kd.logit_weight:
                logit = teacher_logit_loss(out.logits, teacher.logits)
                total = total + self.kd.logit_weight * logit
                if detail:
                    parts["loss.kd_logits"] = float(logit.detach())
        if detail:
            parts["loss"] = float(total.detach())
        return total, parts

    def distillation(self, out, batch: dict, teacher: TeacherOutputs, *, detail: bool = False) -> KDLoss:
        """The hidden-state KD term alone (what the held-out KD loss of the in-loop evaluation reports)."""
        return distillation_loss(out.hidden_states, teacher.hidden_states, batch, layers=self.kd.layers,
                                 weights=self.kd.layer_weights, reduction=self.kd.reduction, detail=detail,
                                 projection=self.projection)

    def pooled_share(self, batch: dict) -> float:
        """Under DDP, rescale this rank's pooled KD mean so that averaging over ranks gives the mean over ALL pairs.

        Ranks select different numbers of positions; DDP averages per-rank losses, which would weight each rank's
        pairs unequally. With this factor (local pairs × world size / global pairs) a DDP step equals a single
        process on the same global batch. (The reference's DataParallel averaged the unequal per-replica means.)
        """
        if self.dist is None or not self.dist.enabled or self.kd.reduction != "pooled":
            return 1.0
        counts = torch.tensor([float(batch["kd_batch"].numel())], device=self.dist.device)
        local = counts.item()
        all_reduce_sum(counts)
        return local * self.dist.world_size / max(counts.item(), 1.0)


def task_weight(stage: StageConfig) -> float:
    """The weight of the task BCE: `task_weight` when the stage mixes both losses, 1 for task, 0 for pure KD."""
    return stage.task_weight if stage.objective == "task+kd" else float(stage.objective == "task")


def build_objective(stage: StageConfig, kd: KDConfig, teacher: TeacherSource | None, *,
                    projection: nn.Module | None = None, dist: DistInfo | None = None) -> StageObjective:
    if stage.distils and teacher is None:
        raise ValueError(f"stage {stage.name!r} distils but no teacher source was given")
    return StageObjective(distils=stage.distils, task_weight=task_weight(stage), kd_weight=stage.kd_weight, kd=kd,
                          teacher=teacher if stage.distils else None, projection=projection, dist=dist)
