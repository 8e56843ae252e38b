"""A worker node drained (spot preemption notice) and stopped mid-trial, on a real two-node Ray
cluster on loopback (tests/fixtures/ray_cluster.py): the trial's Train worker writes its
just-in-time checkpoint, Ray Train restarts the worker group on the head (whose CPU is freed when
the node goes) from it, the trial trains every epoch and the sweep finishes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.recordings import make_dataset

from faults.scenarios import DRAIN_EPOCHS, DRAIN_STEPS_PER_EPOCH

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TESTS = Path(__file__).resolve().parents[1]
# The scenario connects to its own two-node cluster with ray.init and shuts it down again: in this
# process that would collide with tests/faults' shared Ray (conftest `ray_local`, package scope) when
# a test before this one started it (a full run failed that way). So it runs in a process of its own.
SCENARIO = """
import json, sys
from pathlib import Path
from faults.scenarios import worker_node_drained_and_stopped
outcome = worker_node_drained_and_stopped(Path(sys.argv[1]), Path(sys.argv[2]))
facts = {"lost_node": outcome.lost_node, "preempted_checkpoint": outcome.preempted_checkpoint,
         "rows": outcome.report.rows, "study": outcome.plan.name, "storage": outcome.plan.optuna_storage}
print("OUTCOME " + json.dumps(facts, default=str), flush=True)
"""


def run_scenario(folder: Path, data: Path) -> tuple[dict, str]:
    """The scenario's facts and everything its process printed (Ray forwards the workers' logs)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(folder), str(data)],
        env=env, capture_output=True, text=True, timeout=840, cwd=folder,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    found = re.findall(r"^OUTCOME (.*)$", proc.stdout, flags=re.M)
    assert proc.returncode == 0 and found, f"scenario exited {proc.returncode}:\n{output[-6000:]}"
    return json.loads(found[-1]), output


def test_a_drained_then_stopped_worker_node_costs_a_restart_from_the_preemption_checkpoint(tmp_path):
    import optuna

    data = make_dataset(tmp_path / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=5)
    outcome, output = run_scenario(tmp_path, data)
    assert outcome["lost_node"], "the Train worker's node was never found"
    [row] = outcome["rows"]
    assert row["state"] == "completed" and row["epochs"] == DRAIN_EPOCHS, output[-4000:]
    # The drain notice made the worker write a just-in-time checkpoint mid-epoch. The restart began
    # there, or at an epoch-end checkpoint the worker reached before the node was stopped (it trains
    # on until then; a quiet box gets there): never from scratch, never from an older checkpoint.
    assert outcome["preempted_checkpoint"], output[-4000:]
    preempted_step = int(re.match(r"checkpoint_(\d+)", outcome["preempted_checkpoint"]).group(1))
    assert preempted_step > DRAIN_STEPS_PER_EPOCH, preempted_step
    resumed = [int(step) for step in re.findall(r"from step (\d+) \(epoch", output)]
    later_epoch_ends = range(DRAIN_STEPS_PER_EPOCH * (preempted_step // DRAIN_STEPS_PER_EPOCH + 1),
                             DRAIN_STEPS_PER_EPOCH * DRAIN_EPOCHS, DRAIN_STEPS_PER_EPOCH)  # fmt: skip
    assert resumed and resumed[-1] in (preempted_step, *later_epoch_ends), (outcome, resumed, output[-4000:])
    study = optuna.load_study(study_name=outcome["study"], storage=outcome["storage"])
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
