"""Links into the MLflow UI: one builder (gsenet.mlflow_ui), every link in the model-training mode,
and the trials' saved view spelled as the installed UI's JavaScript reads it."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import mlflow
import pytest

from gsenet import mlflow_ui

BASE = "http://127.0.0.1:5000"


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(url.split("#", 1)[1].split("?", 1)[1]))


@pytest.mark.parametrize(
    ("kwargs", "route"),
    [
        ({}, "/"),
        ({"experiment_id": "3"}, "/experiments/3"),
        ({"experiment_id": "3", "tab": "runs"}, "/experiments/3/runs"),
        ({"experiment_id": "3", "run_id": "abc"}, "/experiments/3/runs/abc"),
        ({"experiment_id": "3", "run_id": "abc", "page": "artifacts"}, "/experiments/3/runs/abc/artifacts"),
        ({"model": "gsenet best"}, "/models/gsenet%20best"),
    ],
)
def test_every_link_opens_the_model_training_mode(kwargs, route):
    url = mlflow_ui.ui_url(BASE + "/", **kwargs)
    assert url.startswith(f"{BASE}/#{route}?")
    assert _query(url)["workflowType"] == "machine_learning"


def test_query_values_survive_the_url():
    view_filter = "tags.`mlflow.parentRunId` = 'abc'"
    url = mlflow_ui.ui_url(BASE, "3", tab="runs", searchFilter=view_filter)
    assert _query(url) == {"searchFilter": view_filter, "workflowType": "machine_learning"}


def _ui_bundle() -> str:
    js = Path(mlflow.__file__).parent / "server/js/build/static/js"
    return "".join(p.read_text(errors="replace") for p in js.glob("*.js"))


def test_the_saved_view_uses_names_the_installed_ui_knows():
    """If an MLflow upgrade renames these, the printed trials link would silently show the default page."""
    bundle = _ui_bundle()
    for name in ('"viewStateShareKey"', f'"{mlflow_ui.SHARED_VIEW_TAG}"', '"workflowType"', '"machine_learning"'):
        assert name in bundle, name
    view = mlflow_ui.trials_view("abc", "val_si_sdr", "max", ["model.width_multiplier"], ["val_si_sdr"])
    facets = (
        '["searchFilter","orderByKey","orderByAsc","startTime","lifecycleFilter","modelVersionFilter","datasetsFilter"]'
    )
    assert facets in bundle
    shared_ui_state = json.loads(bundle.split('const a=["selectedColumns",', 1)[1].split("]", 1)[0].join("[]"))
    for key in view:
        assert key in json.loads(facets) or key == "selectedColumns" or key in shared_ui_state, key
    assert "runsExpanded" in shared_ui_state  # ... but the UI drops it from shared views: hence the filter
    assert 'e+".`"+t+"`"' in bundle  # column ids: metrics.`key`
    assert view["selectedColumns"][:2] == ["metrics.`val_si_sdr`", "params.`model.width_multiplier`"]
    assert view["orderByKey"] == "metrics.`val_si_sdr`" and view["orderByAsc"] is False
    assert mlflow_ui.trials_view("abc", "val_loss", "min", [], [])["orderByAsc"] is True


def test_the_saved_view_is_stored_in_the_envelope_the_ui_parses(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("views")
    view = mlflow_ui.trials_view("abc", "val_si_sdr", "max", ["optim.lr"], ["val_si_sdr"])
    key = mlflow_ui.save_shared_view(uri, experiment_id, "sweep s1: trials", view)
    envelope = json.loads(client.get_experiment(experiment_id).tags[mlflow_ui.SHARED_VIEW_TAG + key])
    # the UI's check: string name, number createdAt, string state (JSON of the view)
    assert envelope["name"] == "sweep s1: trials" and isinstance(envelope["createdAt"], int)
    assert json.loads(envelope["state"]) == view
    url = mlflow_ui.shared_view_url(BASE, experiment_id, key)
    assert url.startswith(f"{BASE}/#/experiments/{experiment_id}/runs?")  # the bare page would drop the query
    assert _query(url) == {"viewStateShareKey": key, "workflowType": "machine_learning"}


def test_gsenet_commands_silence_mlflows_own_links_without_the_mode():
    import os

    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

    import gsenet.commands  # noqa: F401

    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    assert MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is True


def test_the_trials_link_ranks_trials_by_their_best_epoch(tmp_path):
    """The sweep ranks a trial by its best epoch; the runs table shows a metric's last value, so the
    saved view orders by (and shows first) best_<metric>, which gsenet.train logs every epoch."""
    from urllib.parse import parse_qs, urlparse

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    parent = client.create_run(client.create_experiment("links")).info.run_id
    lines = mlflow_ui.sweep_links(uri, parent, "s1", "val_si_sdr", "max", ["optim.lr"])
    link = next(line.split("trials:", 1)[1].strip() for line in lines if "trials:" in line)
    key = parse_qs(urlparse(link.replace("#/", "")).query)["viewStateShareKey"][0]
    experiment = client.get_run(parent).info.experiment_id
    view = json.loads(json.loads(client.get_experiment(experiment).tags[mlflow_ui.SHARED_VIEW_TAG + key])["state"])
    assert view["orderByKey"] == "metrics.`best_val_si_sdr`" and view["orderByAsc"] is False
    assert view["selectedColumns"][:3] == ["metrics.`best_val_si_sdr`", "metrics.`best_epoch`", "metrics.`val_si_sdr`"]
