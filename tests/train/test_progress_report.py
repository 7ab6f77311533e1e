"""Progress lines for logs (no terminal), the stage-scaled default `log_every`, and `train.progress=on`."""

from __future__ import annotations

import io

import pytest

from cvil.config import ConfigError, load_config
from cvil.train.progress_report import (BarPostfix, ProgressReporter, default_log_every, format_duration,
                                        reporter_for)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("text,expected", [("on", "on"), ("off", "off"), ("true", "on"), ("false", "off"),
                                           ("auto", "auto"), ("yes", "on"), ("ON", "on")])
def test_progress_accepts_on_off_true_false(text, expected):
    assert load_config(None, [f"train.progress={text}"]).train.progress == expected


def test_progress_still_refuses_other_words():
    with pytest.raises(ConfigError, match="train.progress: 'sometimes' is not one of"):
        load_config(None, ["train.progress=sometimes"])


def test_other_literals_keep_booleans_strict():
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, ["train.precision=true"])


@pytest.mark.parametrize("total,configured,expected", [(1, 0, 1), (99, 0, 1), (250, 0, 2), (10_000, 0, 100),
                                                       (10_000, 7, 7)])
def test_default_log_every_gives_about_100_points_per_stage(total, configured, expected):
    assert default_log_every(total, configured) == expected


def test_lines_at_every_tenth_with_loss_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    rep = ProgressReporter("kd", 100, samples_per_step=32, interval_s=1e9, stream=out, clock=clock)
    lines = []
    for step in range(1, 101):
        clock.now += 0.5  # 0.5 s per step, 64 samples/s
        line = rep.update(step, {"loss": 1.0 / step} if step % 5 == 0 else {})
        if line:
            lines.append(line)
    assert len(lines) == 10 and out.getvalue().splitlines() == lines
    assert lines[0] == "[train] kd step 10/100 (10%) loss 0.1000 | 64.0 samples/s | ETA 45s"
    assert lines[-1] == "[train] kd step 100/100 (100%) loss 0.0100 | 64.0 samples/s | ETA 0s"


def test_a_line_every_interval_on_a_long_stage():
    clock, out = Clock(), io.StringIO()
    rep = ProgressReporter("vqa", 100_000, samples_per_step=8, interval_s=30, stream=out, clock=clock)
    printed = []
    for step in range(1, 201):
        clock.now += 1.0
        if rep.update(step):
            printed.append(step)
    assert printed == [30, 60, 90, 120, 150, 180]  # 10 % (10,000 steps) is far away; the clock decides
    assert "ETA 27h46m" in out.getvalue().splitlines()[0]  # 99,970 steps at 1 s each


def test_resumed_stage_counts_from_its_position():
    clock, out = Clock(), io.StringIO()
    rep = ProgressReporter("kd", 100, samples_per_step=1, start_step=55, interval_s=1e9, stream=out, clock=clock)
    assert rep.update(56) is None
    clock.now = 10.0
    assert rep.update(60).startswith("[train] kd step 60/100 (60%)")  # 5 steps in 10 s -> 2 s/step, 40 left
    assert rep.update(60) is None and "ETA 1m20s" in out.getvalue()


def test_reporter_on_rank_zero_and_not_off_lines_or_the_bar_postfix():
    line = reporter_for("auto", bar_shown=False, is_main=True, stage="s", total_steps=3, samples_per_step=1)
    assert isinstance(line, ProgressReporter)
    assert reporter_for("on", bar_shown=False, is_main=True, stage="s", total_steps=3, samples_per_step=1)
    assert reporter_for("off", bar_shown=False, is_main=True, stage="s", total_steps=3, samples_per_step=1) is None
    assert isinstance(reporter_for("auto", bar_shown=True, is_main=True, stage="s", total_steps=3, samples_per_step=1),
                      BarPostfix)  # beside a bar: no lines, the bar's postfix
    assert reporter_for("off", bar_shown=True, is_main=True, stage="s", total_steps=3, samples_per_step=1) is None
    assert reporter_for("auto", bar_shown=False, is_main=False, stage="s", total_steps=3, samples_per_step=1) is None


def test_the_bar_shows_the_loss_and_the_stage_eta():
    from tqdm import tqdm

    clock = Clock()
    postfix = BarPostfix("kd", 100, clock=clock)
    stream = io.StringIO()
    bar = tqdm(range(10), file=stream, desc="kd ep0")
    postfix.attach(bar)
    clock.now = 10.0
    shown = postfix.update(10, {"loss": 0.4312})
    assert shown == {"loss": "0.4312", "stage": "10/100", "stage ETA": "1m30s"}  # 1 s/step, 90 steps left
    assert bar.postfix and "loss=0.4312" in bar.postfix and "stage ETA=1m30s" in bar.postfix
    clock.now = 10.1
    assert postfix.update(11, None) is None  # refreshed at most every interval_s
    bar.close()


@pytest.mark.parametrize("rank, shown", [("0", ["INFO cvil.x: info line", "WARNING cvil.x: warn line"]),
                                         ("1", ["WARNING [rank 1] cvil.x: warn line"])])
def test_under_torchrun_info_lines_come_from_rank_zero_only(rank, shown):
    import os
    import subprocess
    import sys

    code = ("import logging\nfrom cvil.train.progress_report import configure_logging\nconfigure_logging()\n"
            "logging.getLogger('cvil.x').info('info line')\nlogging.getLogger('cvil.x').warning('warn line')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RANK": rank})
    assert [line.split(" ", 2)[2] for line in proc.stderr.strip().splitlines()] == shown


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.6, 61, 3600, 3 * 3600 + 125)] == ["0s", "1m00s", "1m01s", "1h00m",
                                                                               "3h02m"]
