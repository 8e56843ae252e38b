"""A real sweep (gsenet.train's TorchTrainer per trial, on a real local Ray cluster, a real MLflow
server and a SQLite Optuna study) with its driver killed by SIGKILL mid-sweep and resumed: finished
trials are not re-run, the unfinished one continues from its checkpoint, the study keeps its history
and the total stays num_samples; placement groups are released and the next trial starts at once;
the best model is registered with alias `best`. (ASHA pruning of real trials: test_pruning.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import ray
from fixtures.mlflow_server import mlflow_server  # noqa: F401  (pytest fixture)
from fixtures.sweeps import assert_resources_released
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from gsenet import tracking
from gsenet.runtime import init_ray, shutdown_ray
from search.sweep import load_plan, run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module: 2 CPUs, TRAIN_DRIVER, dashboard on (PG cleanup)."""
    init_ray(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    shutdown_ray()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from gsenet.simulate import simulate_dataset

    return simulate_dataset(
        tmp_path_factory.mktemp("data") / "sim", recordings=8, seed=0, duration_s=1.5, progress=False
    )


def children(uri: str, parent_run_id: str) -> dict[str, object]:
    return {r.data.tags[tracking.TRIAL_ID_TAG]: r for r in tracking.child_runs(uri, parent_run_id)}


def _wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"driver exited ({process.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_real_sweep_survives_driver_sigkill_and_resumes(ray_cluster, mlflow_server, dataset, tmp_path):  # noqa: F811
    storage = tmp_path / "runs"
    name = "resume"
    command = [
        sys.executable, "-m", "gsenet", "search", "--space", "smoke", "--data", str(dataset),
        "--address", ray_cluster, "--storage-path", str(storage), "--mlflow-uri", mlflow_server.uri,
        "--name", name, "--num-samples", "3", "--max-concurrent", "1", "--max-epochs", "3",
        "--grace-period", "3", "--register-model", "sweep-test", "--progress-every", "60",
    ]  # fmt: skip
    log = open(tmp_path / "driver.log", "wb")
    driver = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    train_runs = storage / name / "train_runs"
    timeline = storage / name / "trial_timeline.json"

    def second_trial_checkpointed():
        ended = timeline.is_file() and any(e["event"] == "end" for e in json.loads(timeline.read_text()))
        runs = sorted(train_runs.glob(f"{name}-*"), key=os.path.getmtime)
        # Train resumes from checkpoints its controller has registered (written to this snapshot).
        snapshot = runs[1] / "checkpoint_manager_snapshot.json" if len(runs) == 2 else None
        return ended and snapshot is not None and snapshot.is_file() and "checkpoint_dir_name" in snapshot.read_text()

    try:
        _wait_for(second_trial_checkpointed, 300, "one finished trial and a checkpoint of the next", driver)
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    killed_at = time.time()
    before = json.loads(timeline.read_text())
    first_id = next(e["trial"] for e in before if e["event"] == "end")
    second_id = next(e["trial"] for e in before if e["event"] == "start" and e["trial"] != first_id)

    report = run_sweep(load_plan(name, str(storage)), resume=True, interval_s=60)

    assert len(report.rows) == 3 and {r["state"] for r in report.rows} == {"completed"}
    events = json.loads(timeline.read_text())
    starts = [e for e in events if e["event"] == "start"]
    assert sum(e["trial"] == first_id for e in starts) == 1  # the finished trial was not re-run
    resumed = [e for e in events if e["t"] > killed_at]
    first_epoch_after = next(e["epoch"] for e in resumed if e["event"] == "result" and e["trial"] == second_id)
    assert first_epoch_after >= 2  # continued from its checkpoint, not from epoch 1
    # The next trial starts as soon as the previous one ends (its resources are released at once).
    ends = sorted(e["t"] for e in resumed if e["event"] == "end")
    later_starts = sorted(e["t"] for e in resumed if e["event"] == "start")
    assert later_starts[-1] - ends[0] < 15

    study = optuna.load_study(study_name=name, storage=load_plan(name, str(storage)).optuna_storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3  # history kept, total = num_samples

    assert_resources_released(total_cpus=2)  # placement groups of finished trials are removed

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    plan = load_plan(name, str(storage))
    runs = children(mlflow_server.uri, plan.parent_run_id)
    assert len(runs) == 3 and all(r.data.tags[tracking.STATE_TAG] == "completed" for r in runs.values())
    assert all("model.width_multiplier" in r.data.params for r in runs.values())  # what `gsenet train` logs
    version = client.get_model_version_by_alias("sweep-test", "best")
    assert version.run_id == runs[report.best["trial_id"]].info.run_id
    assert report.model_uri == "models:/sweep-test@best"
