"""The training loop every paper row runs through: a schedule of stages over one student model.

`Trainer.run()` walks the stages of a `RunConfig` (BASELINE, AUG, KD, TEACHER are just different stage lists). Per
stage: set the label head and which parameters train, build AdamW + linear decay, loop over epochs with gradient
accumulation, AMP, clipping, periodic evaluation and resumable checkpoints, then load the stage's selected
checkpoint (best val score, lowest held-out KD loss, or last) as the start of the next stage.

Resume is exact: a checkpoint carries model, optimiser, scheduler, scaler, RNG states and the data position, and the
sampler replays the same permutation from that position, so a killed-and-resumed run ends with the same weights as
an uninterrupted one (fp32, CPU).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from cvil.config import ConfigError, RunConfig, StageConfig
from cvil.fileio import atomic_write
from cvil.tracking import NullTracker, Tracker
from cvil.train import loss_guard, model_setup, progress_report, run_layout
from cvil.train.checkpointing import BackgroundSaver, capture_rng, restore_rng, verified_torch_load
from cvil.data.tokenizers import load_tokenizer
from cvil.train.data_setup import StageData, build_stage_data, to_device
from cvil.train.distributed import DistInfo, barrier
from cvil.train.objective import StageObjective, build_objective, teacher_source
from cvil.train.optim import build_optimizer, build_scheduler
from cvil.precision import grad_scaler, resolve_precision
from cvil.train.step import StepSettings, accumulate, optimizer_step
from cvil.train.stop_signals import RunInterrupted

log = logging.getLogger(__name__)

EvalCallback = Callable[[str, int, dict], None]


@dataclass
class Progress:
    """Where a run is: saved in every checkpoint, enough to continue exactly."""

    stage: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of this rank's shard consumed in the current epoch
    stage_step: int = 0  # optimizer steps taken in the current stage
    global_step: int = 0
    best_value: float | None = None
    best_step: int = -1
    run_id: str = ""
    config_hash: str = ""


class Trainer:
    def __init__(self, cfg: RunConfig, *, dist: DistInfo, tracker: Tracker | None = None,
                 on_eval: EvalCallback | None = None) -> None:
        self.cfg, self.dist, self.on_eval = cfg, dist, on_eval
        self.tracker = tracker or NullTracker()
        self.out = Path(cfg.output_dir)
        self.precision = resolve_precision(cfg.train.precision, dist.device)
        self.scaler = grad_scaler(self.precision, dist.device)
        self.step_settings = StepSettings(dist.device, self.precision, self.scaler, cfg.train.grad_accum,
                                          cfg.train.max_grad_norm)
        self.progress = Progress()
        self.in_step_loop, self.stop_signal = False, 0  # set by cvil.train.stop_signals
        self.tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.init or _required(cfg, "model.tokenizer"))
        self.teacher_tokenizer = None
        if any(s.distils for s in cfg.stages):
            self.teacher_tokenizer = load_tokenizer(cfg.kd.teacher_tokenizer or cfg.kd.teacher)
        from cvil.train.preflight import check_models

        check_models(cfg, self.tokenizer, self.teacher_tokenizer)  # before any model is built
        self.teacher = teacher_source(cfg, dist.device, self.precision)  # online, cached, or None (no KD stage)
        self.model = model_setup.build_student(cfg, dist.device)
        self.show_progress = cfg.train.progress == "on" or (
            cfg.train.progress == "auto" and sys.stderr.isatty() and not os.environ.get("CI"))
        self.saver = BackgroundSaver()  # rank 0 writes checkpoints off the step loop (cvil.train.checkpointing)
        self._last_save = time.monotonic()

    # ------------------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return run_layout.checkpoint_path(self.out)

    def _stage_dir(self, index: int) -> Path:
        return run_layout.stage_dir(self.out, index, self.cfg.stages[index].name)

    def _checkpoint_due(self) -> bool:
        """`train.checkpoint_every_s` > 0: that many seconds since the last save; else `checkpoint_every` steps."""
        if self.cfg.train.checkpoint_every_s > 0:
            return time.monotonic() - self._last_save >= self.cfg.train.checkpoint_every_s
        return self.progress.stage_step % self.cfg.train.checkpoint_every == 0

    def _save_checkpoint(self, optimizer, scheduler) -> None:
        """Rank 0 copies the state to the CPU and a background thread writes it (`BackgroundSaver`)."""
        self._last_save = time.monotonic()
        if not self.dist.is_main:
            return
        self.saver.save({
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "progress": asdict(self.progress),
        }, self.checkpoint_path)

    def load_resume_state(self, *, trust_unverified: bool = False) -> dict | None:
        if not self.checkpoint_path.exists():
            return None
        state = verified_torch_load(self.checkpoint_path, trust_unverified=trust_unverified)
        saved = Progress(**state["progress"])
        from cvil.train.preflight import resume_config_differs

        if self.progress.config_hash and resume_config_differs(state["progress"], self.cfg):
            raise model_setup.ResumeError(
                f"{self.checkpoint_path} was written by a run with a different config (hash {saved.config_hash[:12]} "
                f"vs {self.progress.config_hash[:12]}): refusing to resume; use a new output_dir")
        self.progress = saved
        return state

    # -------------------------------------------------------------------------------------------------- run
    def run(self, resume_state: dict | None = None) -> dict:
        cfg = self.cfg
        start_stage = self.progress.stage
        if resume_state is not None and start_stage >= len(cfg.stages):
            # killed after the last stage (during the final save or evaluation): finish from its selected weights
            model_setup.match_head(self.model, resume_state["model"])
            self.model.load_state_dict(resume_state["model"])
        try:
            for index in range(start_stage, len(cfg.stages)):
                stage_resume = resume_state if index == start_stage else None
                self._run_stage(index, cfg.stages[index], stage_resume)
        except BaseException:
            self._wait_for_saves(quiet=True)  # the checkpoint of an interrupted run is complete before it exits
            raise
        self._wait_for_saves()
        return {"global_step": self.progress.global_step}

    def _wait_for_saves(self, *, quiet: bool = False) -> None:
        """Until the background save is on disk; its error is raised (logged instead while another propagates)."""
        try:
            self.saver.wait()
        except Exception:
            if not quiet:
                raise
            log.exception("the last checkpoint could not be written")

    def _prepare_stage(self, index: int, stage: StageConfig, data: StageData) -> None:
        model_setup.prepare_head(self.model, stage, data.num_labels, seed=self.cfg.train.seed + index)
        self._set_trainable(stage)

    def _set_trainable(self, stage: StageConfig) -> None:
        model_setup.set_trainable(self.model, stage, self.cfg.kd, train_pooler=self.cfg.model.train_pooler,
                                  kd_head=self.cfg.train.kd_head)

    def _run_stage(self, index: int, stage: StageConfig, resume_state: dict | None) -> None:
        cfg, dist = self.cfg, self.dist
        data = build_stage_data(stage, cfg.data, cfg.kd, tokenizer=self.tokenizer,
                                teacher_tokenizer=self.teacher_tokenizer, dist=dist,
                                seed=cfg.train.seed + 1000 * index)
        self._report_data(index, stage, data)
        mid_stage = resume_state is not None and _is_mid_stage(resume_state["progress"])
        if resume_state is not None:  # weights first: the checkpoint's head may not have this stage's label count
            model_setup.match_head(self.model, resume_state["model"])
            self.model.load_state_dict(resume_state["model"])
            restore_rng(resume_state["rng"])
        if not mid_stage:
            self._prepare_stage(index, stage, data)
            self.progress.epoch = self.progress.batches_in_epoch = self.progress.stage_step = 0
            self.progress.best_value, self.progress.best_step = None, -1
        else:
            self._set_trainable(stage)
        objective = self.objective_for(stage, data)  # after the head is settled (`kd_head: decay_only` holds it)
        batches_per_epoch = math.ceil(data.train_sampler.per_rank / cfg.data.batch_size)
        steps_per_epoch = max(1, math.ceil(batches_per_epoch / cfg.train.grad_accum))
        epochs = max(1, math.ceil(stage.epochs))
        total_steps = max(1, round(stage.epochs * steps_per_epoch))
        optimizer = build_optimizer(self.model, stage.lr, cfg.train, dist.device)
        scheduler = build_scheduler(optimizer, total_steps, cfg.train.warmup_ratio)
        if mid_stage:
            optimizer.load_state_dict(resume_state["optimizer"])
            scheduler.load_state_dict(resume_state["scheduler"])
            self.scaler.load_state_dict(resume_state["scaler"])
        wrapped = self._wrap(self.model)
        log_every = progress_report.default_log_every(total_steps, cfg.train.log_every)
        report = progress_report.reporter_for(cfg.train.progress, self.show_progress, dist.is_main, stage.name,
                                              total_steps, cfg.data.batch_size * dist.world_size * cfg.train.grad_accum,
                                              self.progress.stage_step)
        log.info("stage %d %s: %d steps (%d/epoch), lr %.2g, trains %s, objective %s", index, stage.name,
                 total_steps, steps_per_epoch, stage.lr, stage.trainable, stage.objective)
        timer = _Throughput()
        self.in_step_loop = True  # a SIGTERM/SIGINT now waits for the step boundary (cvil.train.stop_signals)
        for epoch in range(self.progress.epoch, epochs):
            self.progress.epoch = epoch
            data.train_sampler.set_epoch(epoch, start=self.progress.batches_in_epoch * cfg.data.batch_size)
            if hasattr(data.train.dataset, "set_epoch"):
                data.train.dataset.set_epoch(epoch)
            self.model.train()
            for batches in _windows(self._progress_bar(data.train, f"{stage.name} ep{epoch}", report),
                                    cfg.train.grad_accum):
                if self.progress.stage_step >= total_steps:
                    break
                batches = [to_device(batch, dist.device) for batch in batches]
                logging_step = (self.progress.global_step + 1) % log_every == 0
                parts = accumulate(wrapped, batches, objective, self.step_settings, detail=logging_step)
                timer.add(sum(batch["input_ids"].shape[0] for batch in batches) * dist.world_size)
                self.progress.batches_in_epoch += len(batches)
                grad_norm = optimizer_step(optimizer, scheduler, self.step_settings)
                loss_guard.check_step(grad_norm, parts, precision=self.precision, step=self.progress.global_step + 1,
                                      stage=f"{index} {stage.name}", batches=batches, dataset=data.train.dataset,
                                      checkpoint=self.checkpoint_path)  # NaN/inf: stop before anything is saved
                self.progress.stage_step += 1
                self.progress.global_step += 1
                step = self.progress.global_step
                if step % log_every == 0:
                    self._log_step(parts, grad_norm, scheduler.get_last_lr()[0], timer, stage)
                if report is not None:
                    report.update(self.progress.stage_step, parts)
                if stage.eval_every and self.progress.stage_step % stage.eval_every == 0:
                    self._evaluate_and_select(index, stage, data, objective)
                if self._checkpoint_due():
                    self._save_checkpoint(optimizer, scheduler)
                if self.stop_signal:
                    self._save_checkpoint(optimizer, scheduler)
                    raise RunInterrupted(self.stop_signal, f"at step {step}; checkpoint saved")
            self.progress.batches_in_epoch = 0
            self.progress.epoch = epoch + 1
            self._evaluate_and_select(index, stage, data, objective)
            self._save_checkpoint(optimizer, scheduler)
            if self.progress.stage_step >= total_steps:
                break
        self.in_step_loop = False
        self._finish_stage(index, stage)
        self.progress.stage = index + 1
        self.progress.epoch = self.progress.batches_in_epoch = self.progress.stage_step = 0
        self._save_checkpoint(optimizer, scheduler)
        if self.stop_signal:
            raise RunInterrupted(self.stop_signal, f"after stage {stage.name}; checkpoint saved")

    def _report_data(self, index: int, stage: StageConfig, data: StageData) -> None:
        """What the stage trains on, and what the coverage filter left out (JVG train: about a quarter of the rows),
        in the log and as run tags `data.<stage>.*` (bookkeeping, not curves: as metrics they led MLflow's charts)."""
        dropped = sum(data.train_dropped.values())
        share = 100 * dropped / max(1, dropped + data.train_kept)
        reasons = "; ".join(f"{n} {why}" for why, n in sorted(data.train_dropped.items())) or "none"
        log.info("stage %d %s: training on %d rows; the coverage filter dropped %d of %d train rows (%.1f%%): %s",
                 index, stage.name, data.train_rows, dropped, dropped + data.train_kept, share, reasons)
        if self.dist.is_main:
            prefix = f"data.{stage.name}"
            self.tracker.set_tags({f"{prefix}.train.rows": data.train_rows, f"{prefix}.train.dropped_rows": dropped,
                                   f"{prefix}.train.dropped_pct": round(share, 2),
                                   f"{prefix}.val.dropped_rows": data.val_dropped})

    def _wrap(self, model):
        """DDP under torchrun, then `torch.compile` when asked (the plain module keeps the state-dict keys)."""
        if self.dist.enabled:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.cfg.train.compile else model

    # ------------------------------------------------------------------------------------------------ steps
    def objective_for(self, stage: StageConfig, data: StageData | None = None) -> StageObjective:
        """The stage's loss, built once; a teacher cache is first opened (and checked) for the stage's datasets."""
        if stage.distils and data is not None:
            self.teacher.prepare({"train": data.train.dataset, "val": data.val.dataset})
        return build_objective(stage, self.cfg.kd, self.teacher, projection=model_setup.kd_projection(self.model),
                               dist=self.dist, task_loss=self.cfg.train.loss,
                               zero_grad_params=model_setup.decay_only_parameters(self.model, stage, self.cfg.kd,
                                                                                  self.cfg.train.kd_head))

    # ------------------------------------------------------------------------------------------- evaluation
    def eval_context(self):
        """What the final evaluation reads of this run (`cvil.train.final_eval.EvalContext`)."""
        from cvil.train.final_eval import EvalContext

        return EvalContext.of_run(self.cfg, model=self.model, tokenizer=self.tokenizer, dist=self.dist,
                                  precision=self.precision)

    def _evaluate_and_select(self, index: int, stage: StageConfig, data: StageData, objective: StageObjective) -> None:
        from cvil.train.in_loop_eval import evaluate_in_loop

        metrics = evaluate_in_loop(self.model, data, objective, precision=self.precision, device=self.dist.device)
        step = self.progress.global_step
        self._log_metrics({f"val.{k}": v for k, v in metrics.items()}, step)
        if self.on_eval is not None:
            self.on_eval(stage.name, step, metrics)
        value, better = _selection_value(stage, metrics)
        if better(value, self.progress.best_value):
            self.progress.best_value, self.progress.best_step = value, step
            if self.dist.is_main:
                model_setup.save_weights(self.model, run_layout.best_weights_path(self._stage_dir(index)))
        barrier()

    def _finish_stage(self, index: int, stage: StageConfig) -> None:
        """Load the stage's selected weights (documented policy per `stage.select`) and record the choice."""
        best = run_layout.best_weights_path(self._stage_dir(index))
        if stage.select != "last" and best.exists():
            self.model.load_state_dict(model_setup.load_weights(best))
        choice = {"stage": stage.name, "select": stage.select, "best_value": self.progress.best_value,
                  "best_step": self.progress.best_step if stage.select != "last" else self.progress.global_step}
        if self.dist.is_main:
            self._stage_dir(index).mkdir(parents=True, exist_ok=True)
            atomic_write(run_layout.selection_path(self._stage_dir(index)), json.dumps(choice, indent=2))
            self._log_metrics({f"{stage.name}.selected_step": choice["best_step"]}, self.progress.global_step)

    # -------------------------------------------------------------------------------------------------- logs
    def _log_step(self, parts: dict, grad_norm: float, lr: float, timer: "_Throughput", stage: StageConfig) -> None:
        metrics = {f"train.{k}": v for k, v in parts.items()}
        metrics.update({"train.lr": lr, "train.grad_norm": grad_norm, "train.samples_per_s": timer.rate()})
        self._log_metrics(metrics, self.progress.global_step)

    def _log_metrics(self, metrics: dict, step: int) -> None:
        """To the run's tracker: `metrics.jsonl` and MLflow on rank 0 (`cvil.tracking_local.TeeTracker`)."""
        if self.dist.is_main:
            self.tracker.log_metrics(metrics, step)

    def _progress_bar(self, iterable, desc: str, report=None):
        if not (self.show_progress and self.dist.is_main):
            return iterable
        from tqdm import tqdm

        bar = tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)
        if hasattr(report, "attach"):  # progress_report.BarPostfix: loss and the stage's ETA beside the bar
            report.attach(bar)
        return bar


def _windows(batches, size: int):
    """The micro-batches of each optimizer step: lists of `size` (the last of an epoch may be shorter; it is a step
    of its own, normalised over what it holds, as `steps_per_epoch` counts it)."""
    window: list = []
    for batch in batches:
        window.append(batch)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def _is_mid_stage(progress: dict) -> bool:
    """A checkpoint written inside a stage (not at a stage boundary, where the next stage starts afresh)."""
    return bool(progress["stage_step"] or progress["epoch"] or progress["batches_in_epoch"])


def _selection_value(stage: StageConfig, metrics: dict):
    """What the stage's checkpoint policy compares: higher val score, lower held-out KD loss, or always the latest."""
    if stage.select == "val_score":
        return metrics.get("score", 0.0), lambda new, best: best is None or new > best
    if stage.select == "val_kd_loss":
        return metrics.get("kd_loss", math.inf), lambda new, best: best is None or new < best
    return 0.0, lambda new, best: True


class _Throughput:
    def __init__(self) -> None:
        self.samples, self.start = 0, time.perf_counter()

    def add(self, n: int) -> None:
        self.samples += n

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.samples / max(now - self.start, 1e-9)
        self.samples, self.start = 0, now
        return rate


def _required(cfg: RunConfig, key: str):
    raise ConfigError(f"config key {key} is required for schedule {cfg.schedule!r}")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
