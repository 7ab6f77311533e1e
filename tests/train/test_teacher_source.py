"""The teacher behind the KD term: online, or the offline cache opened with its identity checks.

A run with `kd.teacher_cache` must serve (up to the cache's fp16 rounding) the online teacher's KD loss, and must
refuse a cache built for other questions or by another teacher, before its first step.
"""

from __future__ import annotations

import json
import shutil

import pytest

from cvil.config import load_config
from cvil.distill.teacher_cache import MANIFEST, TeacherCacheError



def _kd_losses(out) -> dict[str, list[float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    found: dict[str, list[float]] = {}
    for row in rows:
        if "train.loss.kd" in row:
            found.setdefault(str(row["step"]), []).append(row["train.loss.kd"])
    return found


@pytest.fixture(scope="module")
def kd_cache(golden_args, tmp_path_factory):
    """A teacher cache (`cvil kd-cache`) for the golden KD run's stage."""
    from cvil.train.kd_cache import build_kd_cache

    config, overrides = golden_args("kd", tmp_path_factory.mktemp("cache_cfg"))
    out = tmp_path_factory.mktemp("kd_cache")
    assert set(build_kd_cache(config=config, overrides=overrides, out=out, overwrite=True)) == {"train", "val"}
    return out


@pytest.mark.slow
def test_cached_teacher_serves_the_online_kd_loss(golden_args, golden_run, kd_cache, tmp_path):
    from cvil.train.api import run

    config, overrides = golden_args("kd", tmp_path / "cached")
    run(load_config(config, [*overrides, f"kd.teacher_cache={kd_cache}"]))
    online, cached = _kd_losses(golden_run("kd")), _kd_losses(tmp_path / "cached")
    assert online and set(cached) == set(online)
    for step, values in online.items():
        assert cached[step][0] == pytest.approx(values[0], rel=2e-2), step


def test_a_cache_for_other_questions_is_refused(golden_args, kd_cache, tmp_path):
    from cvil.train.api import run

    config, overrides = golden_args("kd", tmp_path / "fewer")
    with pytest.raises(TeacherCacheError, match=r"does not match the dataset it should serve: extra \d+ question id"):
        run(load_config(config, [*overrides, f"kd.teacher_cache={kd_cache}", "data.max_train_examples=24"]))
    assert not (tmp_path / "fewer" / "metrics.jsonl").exists() or "train.loss" not in (
        tmp_path / "fewer" / "metrics.jsonl").read_text()


def test_a_cache_from_another_teacher_is_refused(golden_args, kd_cache, tmp_path):
    from cvil.train.api import run

    other = tmp_path / "cache"
    shutil.copytree(kd_cache, other)
    manifest = json.loads((other / "train" / MANIFEST).read_text())
    manifest["teacher"]["config_hash"] = "0" * 64  # not hashed into content_hash: only the teacher check sees it
    (other / "train" / MANIFEST).write_text(json.dumps(manifest))
    config, overrides = golden_args("kd", tmp_path / "other")
    with pytest.raises(TeacherCacheError, match="built by a teacher with another config"):
        run(load_config(config, [*overrides, f"kd.teacher_cache={other}"]))
