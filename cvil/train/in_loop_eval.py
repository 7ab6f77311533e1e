"""Evaluation during training: the val score that selects checkpoints, and the held-out KD loss.

The score is the reference's `compute_score_with_logits` (soft target of the argmax class), summed over ranks on
unpadded shards so each question counts once. It is reported over the filtered val set (rows with an
in-vocabulary answer, the reference's denominator) and over all val questions (`score_unfiltered`).
"""

from __future__ import annotations

import torch

from cvil.config import StageConfig
from cvil.distill.kd_losses import distillation_loss
from cvil.train.data_setup import StageData, to_device
from cvil.train.distributed import all_reduce_sum
from cvil.train.model_setup import kd_projection
from cvil.precision import autocast


@torch.no_grad()
def evaluate_in_loop(trainer, data: StageData, stage: StageConfig) -> dict[str, float]:
    model, device = trainer.model, trainer.dist.device
    use_kd = stage.objective != "task"
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # score, n, kd loss * n, task loss * n
    for batch in data.val:
        batch = to_device(batch, device)
        with autocast(trainer.precision, device):
            out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["img_feats"],
                        labels=batch["labels"], output_hidden_states=use_kd)
        n = batch["input_ids"].shape[0]
        picked = batch["labels"].gather(1, out.logits.argmax(dim=1, keepdim=True)).sum()
        sums[0] += float(picked)
        sums[1] += n
        sums[3] += float(out.loss) * n
        if use_kd:
            kd = distillation_loss(out.hidden_states, trainer.teacher_hidden(batch, "val"), batch,
                                   layers=trainer.cfg.kd.layers, weights=trainer.cfg.kd.layer_weights,
                                   reduction=trainer.cfg.kd.reduction, detail=False,
                                   projection=kd_projection(trainer.model))
            sums[2] += float(kd.total) * n
    all_reduce_sum(sums)
    model.train(was_training)
    n = max(sums[1].item(), 1.0)
    metrics = {"score": sums[0].item() / n, "task_loss": sums[3].item() / n, "n": sums[1].item(),
               "score_unfiltered": sums[0].item() / (n + data.val_dropped)}
    if use_kd:
        metrics["kd_loss"] = sums[2].item() / n
    return metrics
