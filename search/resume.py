"""Putting a sweep's three records back in agreement after its driver was killed, before `--resume`.

A sweep's state lives in three places that a SIGKILL can leave out of step: Tune's experiment state
(saved every few seconds), the Optuna study (written at once by the searcher) and MLflow (written
by the trials and the driver's callback). Whatever the moment of the kill:

- a trial the killed driver already finished (told to Optuna as COMPLETE/PRUNED/FAIL) may still be
  RUNNING in Tune's older state: it is not trained again; its trainable reports the final result
  Optuna kept (`FINAL_RESULT_ATTR`) and returns, so Tune, the table and MLflow end it the same way;
- a suggestion made after Tune's last save is RUNNING in Optuna with no Tune trial: the searcher
  hands it to the next new trial instead of asking Optuna again (the total stays num_samples);
- that lost trial's MLflow child run is closed KILLED and tagged `lost`;
- whatever is still RUNNING in Optuna when the sweep ends is told FAIL (nothing stays RUNNING).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)
FINAL_RESULT_ATTR = "gsenet.final_result"  # Optuna user attr: the result a finished trial ended with
RAY_TRIAL_ATTR = "ray_trial_id"
LOST_STATE = "lost"  # gsenet.trial_state of a child run whose Tune trial the resumed sweep never knew


def final_result(result: dict[str, Any] | None) -> dict[str, float]:
    """The JSON-safe part of a trial's last result that the table and MLflow need."""
    keys = ("epoch", "step")
    return {
        k: float(v)
        for k, v in (result or {}).items()
        if (k in keys or k.startswith(("val_", "train_"))) and isinstance(v, (int, float)) and math.isfinite(float(v))
    }


@dataclass
class Reconciled:
    """What `reconcile` found; `finished` goes to the trainables (TrialContext.finished)."""

    finished: dict[str, dict[str, float]] = field(default_factory=dict)  # Tune trial id -> final result
    orphans: list[int] = field(default_factory=list)  # Optuna trial numbers the next trials take over
    closed_runs: list[str] = field(default_factory=list)  # MLflow child runs closed as lost

    def describe(self) -> str:
        parts = []
        if self.finished:
            parts.append(f"{len(self.finished)} trial(s) finished by the killed driver are not trained again")
        if self.orphans:
            parts.append(f"{len(self.orphans)} suggestion(s) without a Tune trial are handed to the next trials")
        if self.closed_runs:
            parts.append(f"{len(self.closed_runs)} MLflow run(s) of lost trials closed")
        return "; ".join(parts)


def tune_trials(experiment_path: str, filesystem: Any = None) -> dict[str, str]:
    """Tune trial id -> status in the experiment's saved state (what Tuner.restore will restore)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(experiment_path, storage_filesystem=filesystem)
    return {t.trial_id: t.status for t in analysis.trials}


def reconcile(plan: Any, experiment_path: str, filesystem: Any = None) -> Reconciled:
    """Compare Tune's saved trials (at `experiment_path` on `filesystem`, as Ray reads it) with the
    Optuna study and MLflow; see the module doc."""
    import optuna

    from gsenet import tracking

    found = Reconciled()
    trials = tune_trials(experiment_path, filesystem)
    if plan.optuna_storage:
        study = optuna.load_study(study_name=plan.name, storage=plan.optuna_storage)
        for t in study.get_trials(deepcopy=False):
            owner = t.user_attrs.get(RAY_TRIAL_ATTR, "")
            if t.state.is_finished() and trials.get(owner) not in (None, "TERMINATED", "ERROR"):
                found.finished[owner] = _final_of(t, plan.sweep_settings().metric)
            elif t.state == optuna.trial.TrialState.RUNNING and owner not in trials:
                found.orphans.append(t.number)
    if plan.parent_run_id:
        for run in tracking.child_runs(plan.mlflow_uri, plan.parent_run_id):
            trial_id = run.data.tags.get(tracking.TRIAL_ID_TAG, "")
            if run.info.status == "RUNNING" and trial_id not in trials:
                tracking.close_trial_run(plan.mlflow_uri, run.info.run_id, LOST_STATE, "KILLED")
                found.closed_runs.append(run.info.run_id)
    return found


def _final_of(trial: Any, metric: str) -> dict[str, float]:
    """The result a finished Optuna trial ended with: the searcher's record, else its last intermediate value."""
    kept = trial.user_attrs.get(FINAL_RESULT_ATTR)
    if kept:
        return json.loads(kept) if isinstance(kept, str) else dict(kept)
    if trial.intermediate_values:
        epoch = max(trial.intermediate_values)
        return {"epoch": float(epoch), metric: float(trial.intermediate_values[epoch])}
    return {}


def fail_leftovers(plan: Any) -> int:
    """Tell FAIL to every Optuna trial still RUNNING once the sweep has ended; returns how many."""
    import optuna

    if not plan.optuna_storage:
        return 0
    study = optuna.load_study(study_name=plan.name, storage=plan.optuna_storage)
    left = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for t in left:
        try:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except Exception as exc:  # finished meanwhile by someone else: nothing to do
            logger.warning("could not close Optuna trial %d: %s", t.number, exc)
    return len(left)
