"""gsenet.tracking: the fluent MLflow API is pointed at a store for one block only."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_a_logged_model_ships_gsenet_source_without_pretrained_weights(tmp_path):
    from gsenet.tracking import package_source

    code = package_source(tmp_path / "gsenet")
    shipped = {p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()}
    source = Path(__file__).resolve().parents[1] / "gsenet"
    expected = {
        p.relative_to(source).as_posix()
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and "pretrained" not in p.parts
    }
    assert shipped == expected and "model.py" in shipped and "configs/quality.yaml" in shipped
