"""Stop a run whose training loss stopped being a number, instead of training on silently.

A NaN or inf loss (NaN bytes in a feature file that slipped past the store's checks, a learning rate that blows up)
turns every weight it reaches into NaN at the next optimizer step, and every later checkpoint with it. The trainer
calls `check_step` after each step, before anything of that step is saved, so the last checkpoint on disk is the
last good one. On a GPU this adds no host sync: the gradient norm `optimizer_step` returns is already a Python float,
and the loss parts are read only on logging steps (where `accumulate` has already synced them).

Under fp16 a non-finite gradient norm is routine (the GradScaler skips that step and lowers its scale), so there only
a non-finite logged loss stops the run.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cvil.errors import CvilError

_MAX_LISTED = 16


class NonFiniteLoss(CvilError):
    """The training loss (or its gradient) became NaN/inf: the message names the step, the stage and the batch."""


def check_step(grad_norm: float, parts: dict, *, precision: str, step: int, stage: str, batches: list[dict],
               dataset, checkpoint: Path) -> None:
    """Raise `NonFiniteLoss` when optimizer step `step` of `stage` saw a non-finite loss or gradient norm."""
    loss = parts.get("loss")
    if loss is not None and not math.isfinite(loss):
        what = f"the training loss is {loss}"
    elif precision != "fp16" and not math.isfinite(grad_norm):
        what = f"the gradient norm is {grad_norm}"
    else:
        return
    raise NonFiniteLoss(f"{what} at step {step} (stage {stage}){_batch_images(batches, dataset)}: training stopped "
                        f"before saving anything of this step (the last checkpoint {checkpoint}, if one was written, "
                        "is from an earlier step). Check those images' region features, or lower the learning rate")


def _batch_images(batches: list[dict], dataset) -> str:
    """'; batch img_ids [...]' naming the images of the step's micro-batches (those with non-finite features alone,
    when some have them), or '' when the dataset cannot map question ids to images."""
    try:
        image_of = dict(zip(dataset.question_ids.tolist(), dataset.img_ids.tolist()))
        every, bad = [], []
        for batch in batches:
            ids = batch["question_ids"].cpu().tolist()
            finite = torch.isfinite(batch["img_feats"].flatten(1)).all(dim=1).cpu().tolist()
            every += ids
            bad += [q for q, ok in zip(ids, finite) if not ok]
        images = sorted({int(image_of[q]) for q in (bad or every) if q in image_of})
    except (AttributeError, KeyError, TypeError):
        return ""
    if not images:
        return ""
    listed = ", ".join(map(str, images[:_MAX_LISTED])) + (f", ... ({len(images)} in all)" if len(images) > _MAX_LISTED
                                                          else "")
    return f"; batch img_ids [{listed}]" + (" (non-finite region features)" if bad else "")
