"""A worker node drained (spot preemption notice) and stopped mid-trial, on a real two-node Ray
cluster on loopback (tests/fixtures/ray_cluster.py): the trial's Train worker writes its
just-in-time checkpoint, Ray Train restarts the worker group on the head (whose CPU is freed when
the node goes) from it, the trial trains every epoch and the sweep finishes."""

from __future__ import annotations

import re

import pytest
from fixtures.recordings import make_dataset

from faults.scenarios import DRAIN_EPOCHS, DRAIN_STEPS_PER_EPOCH, worker_node_drained_and_stopped

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    # Green alone (2 runs in a row, 1 Dec 2026), but in a full run it comes after tests that started
    # tests/faults' shared Ray (conftest `ray_local`, package scope): its scenario calls ray.init(address=
    # <its cluster>) in this process while that one is up (it failed at once, leaving only its dataset),
    # and its ray.shutdown() then tears the shared one down (the next module's tests failed). Run the
    # scenario in a subprocess, or shut the shared Ray down and restart it around it, then unskip (issue 13).
    pytest.mark.skip(reason="failed once under load in a fresh-clone full run; see the comment above"),
]


def test_a_drained_then_stopped_worker_node_costs_a_restart_from_the_preemption_checkpoint(tmp_path, capfd):
    import optuna

    data = make_dataset(tmp_path / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=5)
    outcome = worker_node_drained_and_stopped(tmp_path, data, capfd)
    assert outcome.lost_node, "the Train worker's node was never found"
    [row] = outcome.report.rows
    assert row["state"] == "completed" and row["epochs"] == DRAIN_EPOCHS, outcome.output[-4000:]
    # The drain notice made the worker write a just-in-time checkpoint; the restart began there.
    assert outcome.preempted_checkpoint, outcome.output[-4000:]
    step = int(re.match(r"checkpoint_(\d+)", outcome.preempted_checkpoint).group(1))
    assert outcome.resumed_from_step == step > DRAIN_STEPS_PER_EPOCH, (
        outcome.preempted_checkpoint,
        outcome.output[-4000:],
    )
    study = optuna.load_study(study_name=outcome.plan.name, storage=outcome.plan.optuna_storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
