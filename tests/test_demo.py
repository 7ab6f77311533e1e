"""`cvil demo`, the README's main job, end to end on the tiny world: Table I(a)'s three systems by default, and the
students trained in parallel (one thread each) score exactly as when trained one after the other."""

from __future__ import annotations

import pytest

from cvil.cli import main as cvil_main

SYSTEMS = ("baseline", "aug", "kd")


def _scores(out: str) -> dict[str, list[str]]:
    """system -> its printed scores (the table's rows without the seconds column)."""
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in SYSTEMS]
    return {row[0]: row[1:-1] for row in rows}


@pytest.mark.slow
def test_demo_trains_baseline_aug_and_kd_and_parallel_equals_serial(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cvil_main(["demo", "--preset", "tiny", "--jobs", "2"]) == 0
    parallel = _scores(capsys.readouterr().out)
    assert set(parallel) == set(SYSTEMS)
    assert cvil_main(["demo", "--preset", "tiny", "--jobs", "1", "--out", "runs/serial"]) == 0
    assert _scores(capsys.readouterr().out) == parallel
    assert cvil_main(["demo", "--preset", "tiny", "--no-kd", "--out", "runs/nokd"]) == 0
    assert set(_scores(capsys.readouterr().out)) == {"baseline", "aug"}
