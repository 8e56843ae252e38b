"""The sweep driver SIGKILLed at several moments of one real sweep, each time resumed with
`gsenet search --resume` (real `gsenet search` processes, each with its own local Ray; real
TorchTrainer trials; the sweep's optuna.db and MLflow SQLite store).

Each time only the driver process is killed, as a user's `kill -9` would: the local Ray it started
is left to itself, and the resumed driver must stop what is left of it before it goes on.

Whatever the moment, the sweep ends with exactly num_samples trials, in Tune's table, in Optuna and
in MLflow; none is trained again after it finished; nothing is left RUNNING; no process of a killed
driver still runs once the resumed one makes progress.
"""

from __future__ import annotations

import pytest
from fixtures.recordings import make_dataset

from faults.scenarios import MAX_EPOCHS, NUM_SAMPLES, driver_kills

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    # It failed once in a full run (1 Dec 2026): the resumed driver stopped the killed one's trial
    # workers mid-write, leaving mlflow.db a hot journal that the test's read-only SQLite connection
    # could not roll back ("attempt to write a readonly database"), and the next kill point had fired
    # inside take_over. Both fixed in faults/scenarios.py (_open_store, past_take_over).
]
# Three of the four moments, in the order one 3-trial sweep (one trial at a time) meets them:
# right after the second trial's prune, before the third trial's first report, during its final
# report. Each driver start costs 30-100 s on 2 cores; mid-trial (a resume from a checkpoint) is left
# to benchmarks/faults.py and tests/integration/test_gcs_sweep.py's driver SIGKILL.
KILL_POINTS = ("after_prune", "first_report", "final_report")


def test_a_sweep_driver_killed_at_any_moment_resumes_to_exactly_num_samples_trials(tmp_path):
    data = make_dataset(tmp_path / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=5)
    outcome = driver_kills(tmp_path, data, KILL_POINTS)
    assert outcome.returncode == 0, outcome.output[-6000:]
    killed_at = [point for point, _ in outcome.kills]
    # Every moment was hit in turn, unless the sweep was already past the last one.
    assert killed_at == list(KILL_POINTS), (outcome.kills, outcome.missed)

    # The killed driver's local Ray: stopped by the resumed driver before it went on, nothing left at the end.
    stray = outcome.orphans_at_progress  # one count per resumed driver (per start attempt)
    assert len(stray) >= len(killed_at) and not any(stray), (stray, outcome.output[-6000:])
    assert not outcome.left_behind, outcome.left_behind
    assert len(outcome.finished_at_kill) == len(killed_at)

    trials = outcome.optuna
    ids = [t["ray_trial_id"] for t in trials]
    assert len(trials) == NUM_SAMPLES, trials  # no extra suggestion left behind by a killed driver
    assert len(set(ids)) == NUM_SAMPLES and all(ids), trials  # each owned by one Tune trial
    assert not [t for t in trials if t["state"] == "RUNNING"], trials
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}, trials

    # The report's table: the same trials, in the state Optuna has them.
    assert len(outcome.rows) == NUM_SAMPLES
    optuna_state = {t["ray_trial_id"]: t["state"] for t in trials}
    expected = {"COMPLETE": "completed", "PRUNED": "pruned"}
    assert {r["trial_id"]: r["state"] for r in outcome.rows} == {k: expected[v] for k, v in optuna_state.items()}
    assert all(int(r["epochs"]) == MAX_EPOCHS for r in outcome.rows if r["state"] == "completed")
    # Each completed trial's best checkpoint is named, also one that reported again after a kill.
    assert all(r["checkpoint"] for r in outcome.rows if r["state"] == "completed"), outcome.rows

    # MLflow: one closed child per trial; a child of a trial only the killed driver knew is closed as lost.
    runs = outcome.mlflow
    assert not [r for r in runs if r["status"] == "RUNNING"], runs
    kept = [r for r in runs if r["state"] != "lost"]
    assert sorted(r["trial_id"] for r in kept) == sorted(ids), runs
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}
    assert {r["trial_id"]: r["status"] for r in kept} == {k: status[v] for k, v in optuna_state.items()}
    assert all(r["status"] == "KILLED" for r in runs if r["state"] == "lost")

    # None trained again: a trial Optuna had as finished at a kill logged no epoch afterwards.
    for at_kill in outcome.finished_at_kill:
        for trial_id, logged in at_kill.items():
            assert len(outcome.epochs_trained.get(trial_id, [])) == logged, (trial_id, outcome.epochs_trained)
    # Every completed trial logged every epoch (an epoch may show twice: retrained after a kill).
    for trial_id, state in optuna_state.items():
        if state == "COMPLETE":
            assert set(outcome.epochs_trained[trial_id]) == set(range(1, MAX_EPOCHS + 1))
