"""Fixtures shared by the whole test suite (keep each small and generic; add new ones below).

`mlflow_store`: a fresh, already-migrated MLflow SQLite store per test. Migrating a new SQLite store costs seconds
(ENV.md), so one template is migrated per session and copied per test.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest


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
