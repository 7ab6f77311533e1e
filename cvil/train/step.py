"""One training step as two public functions: `loss_step` (forward + backward of a micro-batch) and
`optimizer_step` (unscale, clip, step, schedule). The trainer's loop and the throughput benchmark call the same code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from cvil.data.collate import model_inputs
from cvil.train.objective import StageObjective
from cvil.precision import autocast


@dataclass(frozen=True)
class StepSettings:
    """What a step needs besides the model, the batch and the objective."""

    device: torch.device
    precision: str  # resolved: fp32, bf16 or fp16
    scaler: torch.amp.GradScaler  # disabled outside fp16
    grad_accum: int = 1
    max_grad_norm: float = 1.0


def loss_step(model, batch: dict, objective: StageObjective, settings: StepSettings, *, no_sync: bool = False,
              detail: bool = False) -> dict:
    """Forward + backward of one micro-batch (the loss divided by `grad_accum`); returns the loss parts for logging,
    only when `detail` (reading them is a host sync per number on a GPU). `no_sync` skips DDP's gradient all-reduce
    (every micro-batch of an accumulation but the last)."""
    ddp = getattr(model, "_orig_mod", model)
    ctx = ddp.no_sync() if no_sync and isinstance(ddp, DistributedDataParallel) else contextlib.nullcontext()
    with ctx:
        with autocast(settings.precision, settings.device):
            out = model(*model_inputs(batch), output_hidden_states=objective.distils)
        loss, parts = objective.loss(out, batch, detail=detail)
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
