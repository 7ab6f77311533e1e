"""SIGTERM / SIGINT during training: stop at the next optimizer step, after a checkpoint, and close the run KILLED.

Slurm (`scancel`, time limit), `timeout` and the grid runner stop a job with SIGTERM (the grid with SIGINT to the
job's process group). Python's default for SIGTERM is to die on the spot, which leaves the MLflow run RUNNING for
ever. Inside `stop_on_signals(trainer)` the first signal sets `trainer.stop_signal`; the step loop sees it at the next
step boundary, saves a checkpoint and raises `RunInterrupted`; outside the step loop (data setup, evaluation, the
final test) it is raised at once, the last checkpoint being kept either way. A second signal always raises at once.
`cvil.train.api.run` closes the run as KILLED for it; `cvil train` exits with 128 + the signal number.
"""

from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(KeyboardInterrupt):
    """Training was stopped by a signal (a KeyboardInterrupt, so `except Exception` cleanup never swallows it)."""

    def __init__(self, signum: int, where: str = ""):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}{' ' + where if where else ''}")


@contextlib.contextmanager
def stop_on_signals(trainer):
    """Install the handlers for the duration of a run (main thread only: signals cannot be caught elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if getattr(trainer, "in_step_loop", False) and not getattr(trainer, "stop_signal", 0):
            trainer.stop_signal = signum
            return
        raise RunInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)  # None: it was set outside Python
