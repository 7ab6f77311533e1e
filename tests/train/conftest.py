"""Training fixtures: config paths and the golden runs (the tiny world itself is in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvil.config import load_config
from cvil.world import CONFIG_DIR
from tests.conftest import tiny_overrides


@pytest.fixture
def synthetic_config():
    return lambda name: CONFIG_DIR / "synthetic" / name


# Golden runs (issue 16): a BASELINE and a KD run on the tiny world, fp32, one thread, seed 1, whose logged losses
# at every logged step are pinned in golden_losses.json. The BASELINE run is also the uninterrupted run that the
# resume-after-SIGKILL test compares against. Regenerate (after a change that is MEANT to change training, e.g. new
# rows in the synthetic world) with
#     CVIL_REGEN_GOLDEN=1 python -m pytest -q -p no:cacheprovider tests/train/test_golden_losses.py
# which rewrites golden_losses.json (and skips the comparison); review and commit the diff.
GOLDEN_FILE = Path(__file__).with_name("golden_losses.json")
GOLDEN_RTOL = 1e-5
GOLDEN_RUNS = {  # name: (config, overrides on top of tiny_overrides, the pinned metrics.jsonl keys)
    "baseline": ("baseline.yaml", ("train.precision=fp32", "stages.1.epochs=3", "train.checkpoint_every=2",
                                   "evaluate=[val]"), ("train.loss",)),
    "kd": ("kd.yaml", ("train.precision=fp32", "train.log_every=1", "evaluate=[]",
                       "stages=[{name: kd, dataset: vqa, lang: ja, epochs: 1, lr: 1.0e-3, trainable: all, "
                       "objective: kd, select: last}]"), ("train.loss", "train.loss.kd")),
}


def _logged(out: Path, keys) -> dict[str, dict[str, list[float]]]:
    """{key: {step: [value, ...]}} from a run's metrics.jsonl (a resumed run logs its replayed steps again)."""
    found: dict[str, dict[str, list[float]]] = {key: {} for key in keys}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key in keys:
            if key in row:
                found[key].setdefault(str(row["step"]), []).append(row[key])
    return found


@pytest.fixture(scope="session")
def golden_args(tiny_world):
    """`golden_args(name, out)`: (config file, overrides) of that golden run writing to `out`."""
    def args(name: str, out: Path) -> tuple[Path, list[str]]:
        config, extra, _ = GOLDEN_RUNS[name]
        return CONFIG_DIR / "synthetic" / config, tiny_overrides(tiny_world, out, *extra)

    return args


@pytest.fixture(scope="session")
def golden_run(golden_args, tmp_path_factory):
    """`golden_run(name)`: the output folder of that golden run, trained once per session."""
    from cvil.train.api import run

    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            out = tmp_path_factory.mktemp(f"golden_{name}")
            run(load_config(*golden_args(name, out)))
            done[name] = out
        return done[name]

    return get


@pytest.fixture
def assert_golden_losses():
    """`assert_golden_losses(name, out)`: every value `out` logged at each pinned step equals the pinned one (to
    GOLDEN_RTOL), and `out` logged every pinned step."""
    def check(name: str, out: Path) -> None:
        keys = GOLDEN_RUNS[name][2]
        pinned = json.loads(GOLDEN_FILE.read_text())[name]
        got = _logged(out, keys)
        for key in keys:
            assert pinned[key], f"nothing pinned for {name} {key}"
            assert set(pinned[key]) <= set(got[key]), f"{name} {key}: steps {set(pinned[key]) - set(got[key])} not logged"
            for step, want in pinned[key].items():
                for value in got[key][step]:
                    assert value == pytest.approx(want, rel=GOLDEN_RTOL), f"{name} {key} at step {step}"

    return check


@pytest.fixture
def regenerate_golden_losses():
    """`regenerate_golden_losses(name, out)`: rewrite that run's entry of golden_losses.json from `out`."""
    def write(name: str, out: Path) -> None:
        golden = json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.is_file() else {}
        golden["_regenerate"] = "CVIL_REGEN_GOLDEN=1 python -m pytest -q tests/train/test_golden_losses.py"
        golden[name] = {key: {step: values[-1] for step, values in by_step.items()}
                        for key, by_step in _logged(out, GOLDEN_RUNS[name][2]).items()}
        entries = [f" {json.dumps(run)}: " + (json.dumps(entry) if isinstance(entry, str) else "{\n" + ",\n".join(
            f"  {json.dumps(key)}: {json.dumps(values)}" for key, values in entry.items()) + "\n }")
            for run, entry in sorted(golden.items())]
        GOLDEN_FILE.write_text("{\n" + ",\n".join(entries) + "\n}\n")
        print(f"wrote {name} to {GOLDEN_FILE}: {json.dumps(golden[name])}")

    return write
