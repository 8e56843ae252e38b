"""The sweep's MLflow runs: one parent per sweep, one nested child per trial.

Trials log their own child runs from inside training (gsenet.train, given the parent run id and a
`gsenet.trial_id` tag). The sweep driver only owns the parent run and closes each child with the
trial's final state (completed / pruned / errored), because a trial that ASHA stops is killed
before its own code could say so. Everything goes through an explicit `MlflowClient(uri)`: no
global active run, no `mlflow.set_experiment` side effects on the environment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from gsenet.errors import TrackingError
from gsenet.tracking import check_tracking_server, get_or_create_experiment

TRIAL_ID_TAG = "gsenet.trial_id"
SWEEP_TAG = "gsenet.sweep"
STATE_TAG = "gsenet.trial_state"
PARENT_TAG = "mlflow.parentRunId"
# trial state -> MLflow run status
RUN_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "errored": "FAILED"}


def resolve_uri(uri: str = "") -> str:
    """The tracking URI, by the same rule as `gsenet train` (explicit, $MLFLOW_TRACKING_URI, ./mlruns.db)."""
    from gsenet.tracking import resolve_tracking_uri

    return resolve_tracking_uri(uri)


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def start_parent_run(uri: str, experiment: str, sweep_name: str, params: dict[str, Any], space_text: str) -> str:
    """Create the sweep's parent run; returns its id. Raises TrackingError if MLflow is unreachable."""
    mlflow = client(uri)
    try:
        check_tracking_server(uri)
        experiment_id = get_or_create_experiment(uri, experiment)
        run = mlflow.create_run(
            experiment_id, run_name=sweep_name, tags={SWEEP_TAG: sweep_name, "gsenet.kind": "sweep"}
        )
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot create the sweep's MLflow run at {uri}: {exc} (is the server up?)") from None
    run_id = run.info.run_id
    for key, value in params.items():
        mlflow.log_param(run_id, key, _short(value))
    mlflow.log_text(run_id, space_text, "search_space.yaml")
    return run_id


def child_runs(uri: str, parent_run_id: str) -> list:
    """All child runs of a sweep (any status)."""
    mlflow = client(uri)
    parent = mlflow.get_run(parent_run_id)
    return mlflow.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=10000
    )


def finish_trial_run(
    uri: str, parent_run_id: str, trial_id: str, state: str, params: dict[str, Any], metrics: dict[str, float]
) -> str:
    """Tag the trial's child run with its final state and close it; create the child if training never did."""
    mlflow = client(uri)
    runs = [r for r in child_runs(uri, parent_run_id) if r.data.tags.get(TRIAL_ID_TAG) == trial_id]
    if runs:
        run_id = runs[0].info.run_id
    else:  # the trial died before training could open its run: keep one child per trial anyway
        parent = mlflow.get_run(parent_run_id)
        tags = {PARENT_TAG: parent_run_id, TRIAL_ID_TAG: trial_id, SWEEP_TAG: parent.data.tags.get(SWEEP_TAG, "")}
        run_id = mlflow.create_run(parent.info.experiment_id, run_name=trial_id, tags=tags).info.run_id
        for key, value in params.items():
            mlflow.log_param(run_id, key, _short(value))
        for key, value in metrics.items():
            mlflow.log_metric(run_id, key, value)
    mlflow.set_tag(run_id, STATE_TAG, state)
    for extra in runs[1:]:  # a resumed trial may have opened a second run; close it the same way
        mlflow.set_tag(extra.info.run_id, STATE_TAG, state)
        mlflow.set_terminated(extra.info.run_id, RUN_STATUS[state])
    mlflow.set_terminated(run_id, RUN_STATUS[state])
    return run_id


def name_run(uri: str, run_id: str, name: str) -> None:
    """Rename a run (trial child runs get short names that say what differs; see SearchSpace.trial_label).

    Best effort: a run keeps its long name rather than a trial failing over a transient MLflow error."""
    try:
        client(uri).update_run(run_id, name=name)
    except Exception as exc:
        logging.getLogger("search.mlflow_runs").warning("could not rename MLflow run %s to %r: %s", run_id, name, exc)


NOTE_TAG = "mlflow.note.content"  # the run page's Description, rendered as markdown by the MLflow UI


def set_run_note(uri: str, run_id: str, markdown: str) -> None:
    """Set the run's description (e.g. the sweep's summary on the parent run's page)."""
    client(uri).set_tag(run_id, NOTE_TAG, markdown)


def log_artifacts(uri: str, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
    client(uri).log_artifacts(run_id, str(folder), artifact_path)


def log_metrics(uri: str, run_id: str, metrics: dict[str, float]) -> None:
    mlflow = client(uri)
    for key, value in metrics.items():
        mlflow.log_metric(run_id, key, float(value))


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(uri).set_terminated(run_id, status)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
