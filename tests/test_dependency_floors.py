"""The floors in pyproject.toml cover the newest API the code calls (a floor below it installs, then fails at run);
constraints.txt (what nox, CI and the README install with) pins every requirement inside pyproject's ranges."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]

# (distribution, first version with the API, file that calls it, the call) — the call must still be there
CALLS = [
    ("scipy", "1.15", "bench/stats/significance.py", "rng=np.random.default_rng"),  # rng= of permutation_test/bootstrap
    ("optuna", "4.0", "bench/search.py", "JournalFileBackend"),  # renamed from JournalFileStorage in 4.0
    ("torch", "2.6", "cvil/train/checkpointing.py", "weights_only=True"),  # safe torch.load of checkpoints
    ("transformers", "5.0", "cvil/data/tokenizers.py", "transformers 5"),  # tokenizer loading written for v5
    ("numpy", "1.17", "cvil/data/synth/writer.py", "np.random.default_rng(["),
]


def _floors() -> dict[str, Version]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    floors = {}
    for dep in map(Requirement, deps):
        lows = [Version(s.version) for s in dep.specifier if s.operator in (">=", "==", "~=")]
        floors[dep.name] = max(lows) if lows else Version("0")
    return floors


@pytest.mark.parametrize(("dist", "needed", "file", "call"), CALLS)
def test_floor_covers_the_api_the_code_calls(dist, needed, file, call):
    assert call in (REPO / file).read_text(encoding="utf-8"), f"{file} no longer calls {call!r}: update CALLS"
    assert _floors()[dist] >= Version(needed), f"{dist} floor {_floors()[dist]} is below {needed} ({file}: {call})"


def test_every_dependency_has_a_floor():
    assert all(v > Version("0") for v in _floors().values()), _floors()


def test_constraints_pin_every_requirement_inside_its_range():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    for dep in map(Requirement, project["dependencies"] + project["optional-dependencies"]["dev"]):
        pinned = pins.get(canonicalize_name(dep.name))
        assert pinned is not None, f"constraints.txt does not pin {dep.name}: run tools/freeze_constraints.py"
        assert dep.specifier.contains(pinned, prereleases=True), f"{dep.name}=={pinned} is outside {dep.specifier}"
    assert pins["torch"] < Version("2.14") and not pins["torch"].local  # the CPU wheel here; no CUDA build pinned
