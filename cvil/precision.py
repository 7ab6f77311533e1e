"""Mixed precision: which dtype, the autocast context, and the fp16 GradScaler.

`auto` picks bf16 on GPUs that support it and fp32 on CPU: bf16 autocast on a CPU without bf16 units is 7–9×
slower than fp32 (measured on this project's CI machines). fp16 always comes with `torch.amp.GradScaler`. fp16 is a
CUDA setting (the paper configs ask for it, as the release's apex O1): on a CPU it falls back to fp32 with one
warning, so those configs still run on a CPU machine.
"""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

_warned: set[str] = set()


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            if "fp16" not in _warned:  # once per process (training, evaluation and prediction all resolve it)
                _warned.add("fp16")
                log.warning("precision fp16 needs a CUDA device; running in fp32 on %s instead", device.type)
            return "fp32"
        return requested
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
