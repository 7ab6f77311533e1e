"""Fixtures shared by the whole test suite (keep each small and generic; add new ones below).

`tiny_world`: a tiny synthetic world with a trained (briefly) teacher and a student init, built once per session
(training, analysis and benchmark-layer tests all run on it); `overrides_for(out, *extra)` points a run at it.

`mlflow_store`: a fresh, already-migrated MLflow SQLite store per test. Migrating a new SQLite store costs seconds
(ENV.md), so one template is migrated per session and copied per test.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from cvil.config import load_config
from cvil.world import TEACHER_CONFIG, WorldPaths


@pytest.fixture(scope="session")
def _mlflow_store_template(tmp_path_factory):
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow_template")
    cwd = os.getcwd()
    os.chdir(folder)  # the default experiment's artifact location is resolved against the cwd at migration
    try:
        MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # creates + migrates
    finally:
        os.chdir(cwd)
    return folder / "mlflow.db"


@pytest.fixture
def mlflow_store(_mlflow_store_template, tmp_path, monkeypatch) -> str:
    """``sqlite:///<tmp>/mlflow.db``, exported as MLFLOW_TRACKING_URI; the test runs in tmp_path, and artifacts of
    new experiments and of the default experiment go under tmp_path/mlruns."""
    db = tmp_path / "mlflow.db"
    shutil.copy(_mlflow_store_template, db)
    with sqlite3.connect(db) as con:  # point the copied default experiment at this test's folder, not the template's
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                    (str(tmp_path / "mlruns" / "0"),))
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # an earlier mlflow.set_tracking_uri() in the same process would otherwise win over the environment variable
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None, raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


TINY_SHAPE = "{hidden_size: 32, num_hidden_layers: 4, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64}"


def tiny_overrides(world: WorldPaths, out, *extra: str) -> list[str]:
    """Overrides that point a synthetic config at the tiny world and keep the run to a few seconds."""
    return [*world.overrides(), f"output_dir={out}", "tracking.enabled=false", "data.max_regions=50",
            "train.log_every=2", "train.checkpoint_every=4", "data.batch_size=16", *extra]


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> WorldPaths:
    from cvil.data.synth.writer import generate
    from cvil.models.student_init import make_student_init
    from cvil.train.api import run

    root = tmp_path_factory.mktemp("world") / "tiny"
    generate("tiny", 0, root)
    world = WorldPaths(root, root / "teacher" / "oscar", root / "student_init")
    make_student_init(world.student_init_dir, root / "tokenizers" / "student", seed=0,
                      **load_config(None, [f"model.from_scratch={TINY_SHAPE}"]).model.from_scratch)
    cfg = load_config(TEACHER_CONFIG, [f"data.root={root}", f"model.tokenizer={root / 'tokenizers' / 'teacher'}",
                                       f"output_dir={root / 'teacher'}", "tracking.enabled=false",
                                       "data.max_regions=50", f"model.from_scratch={TINY_SHAPE}",
                                       "stages.0.epochs=3", "evaluate=[]"])
    run(cfg)
    return world


@pytest.fixture(scope="session")
def overrides_for(tiny_world):
    """`overrides_for(out, *extra)`: the tiny-world overrides for a run writing to `out`."""
    return lambda out, *extra: tiny_overrides(tiny_world, out, *extra)
