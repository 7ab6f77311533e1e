"""Progress a log file can hold: periodic one-line reports when no terminal shows a progress bar.

A grid's `.out` files, SLURM logs and `nohup` output get no tqdm bar (it would write carriage returns), so without
these lines training is silent between stage starts for hours. A line is printed at every tenth of the stage and
at least every `interval_s` seconds in between, and at the stage's last step:

    [train] kd step 120/1200 (10%) loss 0.4312 | 38.2 samples/s | ETA 4m12s

On a terminal the tqdm bar carries the same facts in its postfix (`BarPostfix`: loss and the stage's ETA). Also
here: the default `train.log_every`, scaled to the stage so that short runs still get curves, and the per-rank
logging set-up (`configure_logging`: INFO from rank 0 only under torchrun).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Callable, TextIO

POINTS_PER_STAGE = 100  # logged training points per stage when `train.log_every` is 0 (the default)


def default_log_every(total_steps: int, configured: int = 0) -> int:
    """`train.log_every` if set, else about `POINTS_PER_STAGE` logged points per stage (at least every step)."""
    if configured > 0:
        return configured
    return max(1, total_steps // POINTS_PER_STAGE)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressReporter:
    """Call `update(stage_step, parts)` after every optimizer step; prints a line when one is due."""

    def __init__(self, stage: str, total_steps: int, samples_per_step: int, *, start_step: int = 0,
                 interval_s: float = 30.0, fraction: float = 0.1, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stage, self.total, self.samples_per_step = stage, max(1, total_steps), samples_per_step
        self.interval_s, self.stream, self.clock = interval_s, stream, clock
        self.every = max(1, math.ceil(self.total * fraction))
        self.start_step = self.last_step = start_step
        self.start_time = self.last_time = clock()
        self.loss: float | None = None

    def update(self, step: int, parts: dict | None = None) -> str | None:
        """Record step `step` (1-based within the stage); returns the printed line, if any."""
        if parts and parts.get("loss") is not None:
            self.loss = float(parts["loss"])  # the loss is read only on logging steps (a host sync on a GPU)
        now = self.clock()
        due = step >= self.total or step // self.every > self.last_step // self.every \
            or now - self.last_time >= self.interval_s
        if not due or step <= self.last_step:
            return None
        rate = (step - self.last_step) * self.samples_per_step / max(now - self.last_time, 1e-9)
        per_step = (now - self.start_time) / max(step - self.start_step, 1)
        line = (f"[train] {self.stage} step {step}/{self.total} ({100 * step / self.total:.0f}%)"
                + (f" loss {self.loss:.4f}" if self.loss is not None else "")
                + f" | {rate:.1f} samples/s | ETA {format_duration(per_step * (self.total - step))}")
        print(line, file=self.stream or sys.stderr, flush=True)
        self.last_step, self.last_time = step, now
        return line


class BarPostfix:
    """On a terminal: the tqdm bar's postfix shows the last logged loss and the stage's ETA (the bar itself counts
    one epoch's batches, so its own ETA is the epoch's). `attach(bar)` for each epoch's bar, `update` per step."""

    def __init__(self, stage: str, total_steps: int, *, start_step: int = 0, interval_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stage, self.total, self.interval_s, self.clock = stage, max(1, total_steps), interval_s, clock
        self.start_step, self.start_time = start_step, clock()
        self.bar = None
        self.loss: float | None = None
        self.last_time = float("-inf")

    def attach(self, bar) -> None:
        self.bar = bar

    def postfix(self, step: int) -> dict[str, str]:
        per_step = (self.clock() - self.start_time) / max(step - self.start_step, 1)
        out = {"loss": f"{self.loss:.4f}"} if self.loss is not None else {}
        out["stage"] = f"{step}/{self.total}"
        out["stage ETA"] = format_duration(per_step * (self.total - step))
        return out

    def update(self, step: int, parts: dict | None = None) -> dict[str, str] | None:
        """Record step `step` (1-based within the stage); returns the postfix set, if it was refreshed."""
        if parts and parts.get("loss") is not None:
            self.loss = float(parts["loss"])
        now = self.clock()
        if self.bar is None or (now - self.last_time < self.interval_s and step < self.total):
            return None
        self.last_time = now
        shown = self.postfix(step)
        self.bar.set_postfix(shown, refresh=False)
        return shown


def reporter_for(progress: str, bar_shown: bool, is_main: bool, stage: str, total_steps: int,
                 samples_per_step: int, start_step: int = 0) -> ProgressReporter | BarPostfix | None:
    """The stage's reporter, or None: on rank 0 only, not with `train.progress=off`; beside a tqdm bar it is the
    bar's postfix (loss and stage ETA), elsewhere the periodic log lines."""
    if progress == "off" or not is_main:
        return None
    if bar_shown:
        return BarPostfix(stage, total_steps, start_step=start_step)
    return ProgressReporter(stage, total_steps, samples_per_step, start_step=start_step)


def configure_logging(level: int = logging.INFO, rank: int | None = None) -> None:
    """Logging for a command that may run under torchrun: INFO lines from rank 0 only (N processes would print
    every line N times); the other ranks log warnings and errors, prefixed with their rank."""
    if rank is None:
        try:
            rank = int(os.environ.get("RANK", "0"))
        except ValueError:
            rank = 0
    if rank == 0:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=max(level, logging.WARNING),
                            format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s")
