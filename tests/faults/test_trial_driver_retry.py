"""Tune re-runs a trial driver that failed for a reason that goes away, and only then.

- MLflow server (a real process) down when the trial driver starts, back 8 s (plus its start-up) later: the trial
  driver fails, Tune retries it, the trial trains its epoch and the sweep ends with it completed.
- A non-finite loss (an error no retry fixes): the trial is errored after one training attempt;
  the retries Tune makes fail at once with the same message instead of training again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.recordings import make_dataset
from mlflow import MlflowClient

from faults.scenarios import mlflow_down_at_trial_start, permanent_trial_error
from gsenet import tracking
from search.sweep import TRIAL_DRIVER_RETRIES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=5)


def test_a_trial_driver_that_finds_mlflow_down_is_retried_and_completes(ray_local, dataset, tmp_path):
    outcome = mlflow_down_at_trial_start(tmp_path, dataset, ray_local, outage_s=8.0)
    try:
        _check_completed_after_retries(outcome)
    finally:
        outcome.server.stop()


def _check_completed_after_retries(outcome) -> None:
    import optuna

    assert outcome.outage_s >= 8.0
    assert 1 <= outcome.attempts <= TRIAL_DRIVER_RETRIES  # it did fail on the outage, and was retried
    assert not outcome.permanent
    [row] = outcome.report.rows
    assert row["state"] == "completed" and row["epochs"] == 1
    study = optuna.load_study(study_name=outcome.plan.name, storage=outcome.plan.optuna_storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    # The trial's MLflow run has its epoch: what the worker logged after the server came back.
    uri = outcome.plan.mlflow_uri
    [child] = tracking.child_runs(uri, outcome.plan.parent_run_id)
    assert child.info.status == "FINISHED" and child.data.tags[tracking.TRIAL_ID_TAG] == row["trial_id"]
    history = MlflowClient(uri).get_metric_history(child.info.run_id, "val_si_sdr")
    assert [m.step for m in history] and history[-1].value == pytest.approx(row["val_si_sdr"])


def test_an_error_no_retry_fixes_trains_once_and_fails(ray_local, dataset, tmp_path, capfd):
    capfd.readouterr()
    outcome = permanent_trial_error(tmp_path, dataset, ray_local, f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = "".join(capfd.readouterr())
    [row] = outcome.report.rows
    assert row["state"] == "errored"
    assert "non-finite loss" in outcome.permanent and outcome.attempts == 0
    # One Train attempt (Ray echoes each worker line twice, once per stream: count distinct pids).
    import re

    pids = {re.search(r"pid=(\d+)", line).group(1) for line in out.splitlines() if "from scratch" in line}
    assert len(pids) == 1, out[-3000:]
    # Tune's record of the trial: the first failure, then each retry failing at once with the same message.
    [errors] = Path(outcome.plan.experiment_path).glob("*/error.txt")
    text = errors.read_text()
    assert text.count("Failure #") == TRIAL_DRIVER_RETRIES + 1
    assert text.count("not retried: it fails the same way every time") >= TRIAL_DRIVER_RETRIES
