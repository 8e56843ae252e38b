"""gsenet.tracking: the fluent MLflow API is pointed at a store for one block only."""

from __future__ import annotations

import os

import mlflow

from gsenet.tracking import fluent_uris


def test_fluent_uris_leave_no_process_wide_uri_behind(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: left set, later clients and subprocesses
    (a later test module's, a user's notebook cell) talked to a server long gone (CI, 1 Dec 2026)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path / 'mine.db'}")
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with fluent_uris(store):
        assert mlflow.get_tracking_uri() == store and mlflow.get_registry_uri() == store
        assert os.environ["MLFLOW_TRACKING_URI"] == store
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert os.environ["MLFLOW_REGISTRY_URI"] == f"sqlite:///{tmp_path / 'mine.db'}"
