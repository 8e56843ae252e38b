"""Real pruning: ASHA stops real `TorchTrainer` trials (tiny GSENet) mid-run, and everything that
knows about a trial agrees: Tune's result, the Optuna study (PRUNED), the MLflow child (pruned,
KILLED), the sweep's parent run (trials_pruned, results, plots) and the cluster (its workers and
placement group released)."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from pathlib import Path

import optuna
import pytest
from fixtures.mlflow_server import mlflow_server  # noqa: F401  (pytest fixture)
from fixtures.ray_local import ray_local  # noqa: F401
from fixtures.recordings import make_dataset
from fixtures.sweeps import assert_resources_released, sweep_plan
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from gsenet import tracking

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
EPOCHS, TRIALS = 3, 6

# A learning rate of ~0 beside working ones: some trials are clearly worse at the first rung.
SPACE = f"""
description: real ASHA pruning of tiny GSENet trials
fixed:
  train.epochs: {EPOCHS}
  train.steps_per_epoch: 3
  train.metric_subset: 0
  train.keep_checkpoints: 1
  model.widths: [4, 4, 8, 8, 8, 8]
  model.dilation_depth: 1
  optim.warmup_steps: 1
  data.segment_seconds: 0.5
  data.batch_size: 2
sweep:
  metric: val_si_sdr
  num_samples: {TRIALS}
  max_concurrent: 1
  scheduler: asha
  grace_period: 1
  reduction_factor: 2
  brackets: 1
  searcher: random
  seed: 3
  register_model: ""
parameters:
  optim.lr: {{type: loguniform, low: 1.0e-7, high: 1.0e-2}}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root / "ds", n_per_split={"train": 3, "val": 2, "test": 1}, seconds=1.0, seed=7)


def test_asha_stops_real_trials_and_every_record_agrees(ray_local, mlflow_server, dataset, tmp_path):  # noqa: F811
    from search.sweep import run_sweep

    plan = sweep_plan(SPACE, name="pruning", folder=tmp_path, dataset=dataset, mlflow_uri=mlflow_server.uri)
    started = time.monotonic()
    report = run_sweep(plan, address=ray_local, interval_s=600)
    wall_s = time.monotonic() - started

    pruned = {r["trial_id"] for r in report.rows if r["state"] == "pruned"}
    assert pruned, f"ASHA stopped no trial: {[(r['trial_id'], r['epochs'], r['val_si_sdr']) for r in report.rows]}"
    assert all(r["epochs"] < EPOCHS for r in report.rows if r["trial_id"] in pruned)  # stopped mid-run
    assert all(r["epochs"] == EPOCHS for r in report.rows if r["state"] == "completed")

    study = optuna.load_study(study_name="pruning", storage=plan.optuna_storage)
    by_trial = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert len(by_trial) == TRIALS
    assert {tid for tid, t in by_trial.items() if t.state == TrialState.PRUNED} == pruned
    for trial_id in pruned:  # the value Optuna saw at the stop is what Tune reported
        assert max(by_trial[trial_id].intermediate_values) < EPOCHS

    runs = {r.data.tags[tracking.TRIAL_ID_TAG]: r for r in tracking.child_runs(mlflow_server.uri, plan.parent_run_id)}
    for trial_id in pruned:
        assert runs[trial_id].data.tags[tracking.STATE_TAG] == "pruned"
        assert runs[trial_id].info.status == "KILLED"

    complete = [t for t in by_trial.values() if t.state == TrialState.COMPLETE]
    assert complete and all(max(t.intermediate_values) == EPOCHS for t in complete)  # only full trials
    for trial_id, run in runs.items():  # every child closed in the state Optuna has
        expected = "pruned" if trial_id in pruned else "completed"
        assert run.data.tags[tracking.STATE_TAG] == expected
        assert run.info.status == ("KILLED" if expected == "pruned" else "FINISHED")
    client = MlflowClient(mlflow_server.uri)
    parent = client.get_run(plan.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_pruned"] == len(pruned)
    artifacts = {a.path for a in client.list_artifacts(plan.parent_run_id)}
    assert {"results.csv", "plots", "search_space.yaml"} <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(plan.parent_run_id, "plots")}
    assert {"optimization_history.html", "optimization_history.png"} <= plots

    assert_resources_released(total_cpus=2)  # the stopped trials' workers and placement groups
    events = json.loads(Path(plan.experiment_path, "trial_timeline.json").read_text())
    ends = sorted(e["t"] for e in events if e["event"] == "end")[:-1]  # each but the last has a successor
    starts = [e["t"] for e in events if e["event"] == "start"]
    waits = [round(min(s for s in starts if s > end) - end, 1) for end in ends]
    assert max(waits) < 15, waits  # a stopped trial's resources are free at once: the next one starts
    _check_a_resumed_asha_gets_the_rungs_back(plan, by_trial)

    trial_epochs = sum(r["epochs"] for r in report.rows)
    # Without ASHA the same trials start (same start-up cost) and one at a time (max_concurrent 1)
    # train every epoch: the wall time the stopped epochs would have added is their count times the
    # measured time between two epochs' reports of one trial.
    reports: dict[str, list[float]] = {}
    for event in events:
        if event["event"] == "result":
            reports.setdefault(event["trial"], []).append(event["t"])
    epoch_s = statistics.median(b - a for times in reports.values() for a, b in itertools.pairwise(times))
    without_asha_s = wall_s + (TRIALS * EPOCHS - trial_epochs) * epoch_s
    print(
        f"\nASHA: {len(pruned)}/{TRIALS} trials stopped; {trial_epochs} of {TRIALS * EPOCHS} trial-epochs trained "
        f"({1 - trial_epochs / (TRIALS * EPOCHS):.0%} saved); sweep wall time {wall_s:.0f} s, "
        f"{without_asha_s:.0f} s without ASHA ({epoch_s:.1f} s per trial-epoch, measured)"
    )


def _check_a_resumed_asha_gets_the_rungs_back(plan, by_trial: dict) -> None:
    """What a resumed driver's ASHA starts from (search/scheduler.py): the trials Tune restores from
    the saved experiment, each added to the scheduler as Tuner.restore adds them, give back this
    sweep's rung records: every trial's epoch-1 value (and epoch 2 for those that got there), as
    Optuna recorded them from the live reports."""
    from ray.tune import ExperimentAnalysis

    from search.sweep import make_scheduler, ray_storage

    resumed = make_scheduler(plan.sweep_settings(), plan.max_epochs())
    path, filesystem = ray_storage(plan.experiment_path)
    for restored in ExperimentAnalysis(path, storage_filesystem=filesystem).trials:
        resumed.on_trial_add(None, restored)
    [rungs] = resumed.rung_records()
    for milestone in (1, 2):
        expected = {
            tid: t.intermediate_values[milestone] for tid, t in by_trial.items() if milestone in t.intermediate_values
        }
        assert rungs[milestone] == pytest.approx(expected), milestone
