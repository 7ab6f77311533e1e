"""Fixtures for the benchmark-layer tests: a fresh, already-migrated MLflow SQLite store per test.

Migrating a new SQLite store costs seconds, so one template is migrated per test session and copied.
(If tests/conftest.py grows a shared `mlflow_store` fixture, this one can go.)
"""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates and migrates the schema
    return path


@pytest.fixture
def mlflow_store(_mlflow_template, tmp_path, monkeypatch):
    """`sqlite:///<tmp>/mlflow.db`, also exported as MLFLOW_TRACKING_URI; the test runs in tmp_path."""
    db = tmp_path / "mlflow.db"
    shutil.copy(_mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
