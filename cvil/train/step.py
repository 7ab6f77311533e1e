"""One training step as public functions: `accumulate` (forward + backward of every micro-batch of one optimizer
step), `loss_step` (one micro-batch) and `optimizer_step` (unscale, clip, step, schedule). The trainer's loop and the
throughput benchmark call the same code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from cvil.inputs.collate import model_inputs
from cvil.train.objective import LossWindow, StageObjective
from cvil.precision import autocast


@dataclass(frozen=True)
class StepSettings:
    """What a step needs besides the model, the batch and the objective."""

    device: torch.device
    precision: str  # resolved: fp32, bf16 or fp16
    scaler: torch.amp.GradScaler  # disabled outside fp16
    grad_accum: int = 1
    max_grad_norm: float = 1.0


def accumulate(model, batches: list[dict], objective: StageObjective, settings: StepSettings, *,
               detail: bool = False) -> dict:
    """Forward + backward of the micro-batches of one optimizer step (at most `grad_accum`; fewer at an epoch's
    end), normalised over all of them (and over all ranks): the gradient equals that of one process on the whole
    batch. DDP all-reduces on the last micro-batch only. The loss parts of the last micro-batch when `detail`."""
    window = objective.window(batches, settings.grad_accum)
    parts: dict = {}
    for i, batch in enumerate(batches):
        last = i + 1 == len(batches)
        parts = loss_step(model, batch, objective, settings, no_sync=not last, detail=detail and last, window=window)
    return parts


def loss_step(model, batch: dict, objective: StageObjective, settings: StepSettings, *, no_sync: bool = False,
              detail: bool = False, window: LossWindow | None = None) -> dict:
    """Forward + backward of one micro-batch; returns the loss parts for logging, only when `detail` (reading them is
    a host sync per number on a GPU). `no_sync` skips DDP's gradient all-reduce (every micro-batch of an
    accumulation but the last).

    The loss is weighted by the micro-batch's share of `window` and divided by `grad_accum` (`accumulate` makes
    the window). Without a window, the window is this micro-batch alone: each micro-batch's own mean, divided by
    `grad_accum`."""
    ddp = getattr(model, "_orig_mod", model)
    ctx = ddp.no_sync() if no_sync and isinstance(ddp, DistributedDataParallel) else contextlib.nullcontext()
    if window is None:
        window = objective.window([batch])
    with ctx:
        with autocast(settings.precision, settings.device):
            out = model(*model_inputs(batch), output_hidden_states=objective.distils)
        loss, parts = objective.loss(out, batch, detail=detail, window=window)
        settings.scaler.scale(loss / settings.grad_accum).backward()
    return parts


def optimizer_step(optimizer, scheduler, settings: StepSettings) -> float:
    """Unscale, clip to `max_grad_norm`, step the optimizer and the schedule, clear the gradients; the grad norm."""
    settings.scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
    settings.scaler.step(optimizer)
    settings.scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)
