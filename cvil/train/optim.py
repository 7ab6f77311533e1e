"""AdamW and the per-stage linear schedule as the reference runs them (reference §2.8).

Weight decay 0.05 on everything except biases and LayerNorm weights (the reference's `no_decay` names); only
parameters that train in the stage are handed to the optimiser, so a head-only stage neither decays nor updates the
frozen encoder. The LR decays linearly to 0 over the stage (restarted each stage), with optional warmup.
"""

from __future__ import annotations

import torch
from torch import nn

from cvil.config import TrainConfig

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")


def build_optimizer(model: nn.Module, lr: float, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if any(tag in name for tag in NO_DECAY) else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    impl = cfg.optimizer_impl
    if impl == "auto":
        impl = "fused" if device.type == "cuda" else "foreach"
    kwargs = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.adam_betas, eps=cfg.adam_eps, **kwargs)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
