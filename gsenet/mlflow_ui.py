"""Links into the MLflow UI (3.17), built in one place so every printed URL opens the right page.

- Every link carries `workflowType=machine_learning`: a fresh browser opens MLflow 3's GenAI mode
  otherwise, whatever the experiment's kind.
- A sweep's trials are comparable at one click through a *shared view* that the sweep saves on the
  experiment: the UI's own "Share" mechanism (experiment tag `mlflow.sharedViewState.<key>`, URL
  parameter `viewStateShareKey=<key>`). The view filters the runs to the sweep's trials (a search
  filter also makes the table flat: MLflow nests children only without a filter), sorts them by the
  sweep's metric, and shows the searched params and metrics as columns. Which rows are expanded
  cannot be shared (the UI drops `runsExpanded` from shared views), which is why the view filters.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse

TRAINING_MODE = {"workflowType": "machine_learning"}
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + key; the UI reads it for ?viewStateShareKey=key
LOCAL_UI = "http://127.0.0.1:5000"  # where `gsenet ui` serves a local store by default


def ui_url(
    base: str,
    experiment_id: str = "",
    run_id: str = "",
    page: str = "",
    *,
    tab: str = "",
    model: str = "",
    **query: str,
) -> str:
    """A link to the MLflow UI at `base` (http://host:port), in the model-training mode: the
    experiments list, an experiment (or its `tab`, e.g. "runs"), a run, a run's `page` (e.g.
    "artifacts"), or a registered `model`'s page. `query` adds URL parameters."""
    path = "/"
    if model:
        path = f"/models/{urllib.parse.quote(model)}"
    elif experiment_id:
        path = f"/experiments/{experiment_id}"
        if run_id:
            path += f"/runs/{run_id}" + (f"/{page}" if page else "")
        elif tab:
            path += f"/{tab}"
    params = urllib.parse.urlencode({**query, **TRAINING_MODE}, quote_via=urllib.parse.quote)
    return f"{base.rstrip('/')}/#{path}?{params}"


def column(kind: str, key: str) -> str:
    """A runs-table column id as the UI spells it, e.g. column("metrics", "val_si_sdr")."""
    return f"{kind}.`{key}`"


def trials_view(parent_run_id: str, metric: str, mode: str, params: list[str], metrics: list[str]) -> dict:
    """The UI state that lists one sweep's trials, best first, with what was searched and measured."""
    return {
        "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        "orderByKey": column("metrics", metric),
        "orderByAsc": mode == "min",
        "selectedColumns": [column("metrics", m) for m in metrics]
        + [column("params", p) for p in params]
        + [column("tags", "gsenet.trial_state")],
        "runsHiddenMode": "SHOW_ALL",
    }


def save_shared_view(uri: str, experiment_id: str, name: str, view: dict) -> str:
    """Store `view` on the experiment as a saved view called `name` (listed under the runs page's
    "Views" menu too); returns its share key. The tag holds the UI's envelope:
    {"name", "createdAt", "updatedAt" (ms), "state": the view as a JSON string}."""
    from mlflow.tracking import MlflowClient

    state = json.dumps(view, sort_keys=True)
    key = hashlib.sha256(f"{name}\n{state}".encode()).hexdigest()[:32]
    now_ms = int(time.time() * 1000)
    envelope = json.dumps({"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": state})
    MlflowClient(tracking_uri=uri).set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, envelope)
    return key


def shared_view_url(base: str, experiment_id: str, key: str) -> str:
    """The runs tab with a saved view applied (the experiment's bare page redirects to its runs
    tab and drops the query, so the link names the tab)."""
    return ui_url(base, experiment_id, tab="runs", viewStateShareKey=key)


def sweep_links(uri: str, parent_run_id: str, sweep: str, metric: str, mode: str, params: list[str]) -> list[str]:
    """Summary lines: the trials' comparison view (saved on the experiment now) and the sweep's run."""
    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient(tracking_uri=uri).get_run(parent_run_id).info.experiment_id
    # Trials are ranked by their best epoch (gsenet.train logs best_<metric> each epoch); a plain
    # metric column shows the last epoch's value.
    from gsenet.config import best_metric_name

    best = best_metric_name(metric)
    metrics = list(dict.fromkeys([best, "best_epoch", metric, "val_si_sdr", "val_si_sdr_improvement"]))
    view = trials_view(parent_run_id, best, mode, params, metrics)
    key = save_shared_view(uri, experiment_id, f"sweep {sweep}: trials", view)
    base, serve = browser_base(uri)
    lines = [f"  MLflow UI:        {serve}, then open:" if serve else "  MLflow UI:"]
    lines.append(f"    trials:         {shared_view_url(base, experiment_id, key)}")
    lines.append(f"    sweep run:      {ui_url(base, experiment_id, parent_run_id)}")
    return lines


def browser_base(uri: str) -> tuple[str, str]:
    """(the UI's address, the command that serves it first or "") for a tracking URI."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/"), ""
    from gsenet.tracking import resolve_tracking_uri

    return LOCAL_UI, "gsenet ui" if uri == resolve_tracking_uri("") else f"gsenet ui --mlflow-uri {uri}"
