"""Evaluation during training: the val score that selects checkpoints, and the held-out KD loss.

The score is the reference's `compute_score_with_logits` (soft target of the argmax class), summed over ranks on
unpadded shards so each question counts once. It is reported over the filtered val set (rows with an
in-vocabulary answer, the reference's denominator) and over all val questions (`score_unfiltered`), in percent as
every accuracy cvil logs (declared in `cvil.eval.metrics.IN_LOOP`).
"""

from __future__ import annotations

import torch

from cvil.inputs.collate import model_inputs
from cvil.eval.soft_score import SoftScore, batch_score_sum
from cvil.train.data_setup import StageData, to_device
from cvil.train.distributed import all_reduce_sum
from cvil.train.objective import StageObjective
from cvil.precision import autocast


@torch.no_grad()
def evaluate_in_loop(model, data: StageData, objective: StageObjective, *, precision: str,
                     device: torch.device) -> dict[str, float]:
    """Val metrics of `model` over the stage's val loader; `kd_loss` too when the stage's objective distils."""
    use_kd = objective.distils
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # score, n, kd loss * n, task loss * n
    for batch in data.val:
        batch = to_device(batch, device)
        with autocast(precision, device):
            out = model(*model_inputs(batch), output_hidden_states=use_kd)
        n = batch["input_ids"].shape[0]
        sums[0] += batch_score_sum(out.logits, batch["labels"])
        sums[1] += n
        sums[3] += float(objective.task(out.logits, batch["labels"])) * n  # `train.loss`, whatever the stage weighs
        if use_kd:
            kd = objective.distillation(out, batch, objective.teacher.outputs(batch, "val"))
            sums[2] += float(kd.total) * n
    all_reduce_sum(sums)
    model.train(was_training)
    n = max(sums[1].item(), 1.0)
    score = SoftScore(sums[0].item(), int(sums[1].item()), data.val_dropped)
    metrics = {"score": 100 * score.filtered, "task_loss": sums[3].item() / n, "n": sums[1].item(),
               "score_unfiltered": 100 * score.unfiltered}
    if use_kd:
        metrics["kd_loss"] = sums[2].item() / n
    return metrics
