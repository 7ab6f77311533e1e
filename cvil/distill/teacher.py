"""The frozen teacher, run online: eval mode, no autograd, same tags and image, the English question.

Online beats the reference's 290 GB fp16 cache for anything but the largest runs: the teacher's forward costs
about a third of a student step and nothing has to stay in sync on disk. The teacher runs under `torch.no_grad()`
(not `inference_mode`: its outputs enter a loss that is backpropagated through the student).
"""

from __future__ import annotations

import torch
from torch import nn

from cvil.inputs.collate import model_inputs
from cvil.precision import autocast


class FrozenTeacher(nn.Module):
    def __init__(self, model: nn.Module, *, precision: str = "fp32") -> None:
        super().__init__()
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.precision = precision

    def train(self, mode: bool = True) -> FrozenTeacher:  # the teacher never leaves eval mode (no dropout)
        return super().train(False)

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor]):
        """Teacher outputs (hidden states of every layer, logits) for the English side of a KD batch."""
        device = batch["teacher_input_ids"].device
        with autocast(self.precision, device):
            return self.model(*model_inputs(batch, side="teacher"), output_hidden_states=True)
