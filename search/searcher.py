"""Optuna behind Ray Tune, telling Optuna the truth about early-stopped trials.

Ray's `OptunaSearch` tells Optuna that a trial ASHA stopped after 2 of 20 epochs is COMPLETE with
its epoch-2 loss. TPE then compares that truncated score with the final scores of full trials and
learns that "stopped early" configurations are good or bad for the wrong reason. Here a trial that
ends before `max_epochs` (stopped by ASHA or by the time budget) is told as PRUNED (Optuna keeps
its last intermediate value and ranks it below complete trials, as its own pruners do), an errored
trial as FAIL, and only a trial that ran every epoch as COMPLETE. Intermediate values are keyed by
the reported `epoch`, not Tune's `training_iteration`, so they stay right after a sweep is resumed.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.resume import FINAL_RESULT_ATTR, RAY_TRIAL_ATTR, final_result
from search.space import SearchSpace, SweepSettings

logger = logging.getLogger(__name__)
EPOCH_KEY = "epoch"


class PrunedAwareOptunaSearch(OptunaSearch):
    """`OptunaSearch` that reports ASHA-stopped trials as PRUNED and errors as FAIL."""

    def __init__(self, *args: Any, max_epochs: int, epoch_key: str = EPOCH_KEY, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.epoch_key = epoch_key
        self._last_epoch: dict[str, int] = {}

    def suggest(self, trial_id: str) -> dict | None:
        orphans = getattr(self, "_orphans", [])
        if trial_id not in self._ot_trials and orphans:
            # A suggestion a killed driver made after Tune's last save: this new trial takes it
            # over (same params, same Optuna trial) instead of asking Optuna for one more.
            self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, orphans.pop(0))
        params = super().suggest(trial_id)
        # optuna-dashboard and the results table join Optuna trials to Tune trials by this.
        self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ATTR, trial_id)
        return params

    def restore(self, checkpoint_path: str) -> None:
        """The pickled state, then agreement with the study as the killed driver left it: trials
        it finished are finished here too, and its RUNNING suggestions that no Tune trial owns
        are kept for the next new trials (see search/resume.py)."""
        super().restore(checkpoint_path)
        storage = self._ot_study._storage
        owned = set()
        for trial_id, ot_trial in self._ot_trials.items():
            owned.add(ot_trial._trial_id)
            if storage.get_trial(ot_trial._trial_id).state.is_finished():
                self._completed_trials.add(trial_id)
        self._orphans = [
            t._trial_id
            for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t._trial_id not in owned
        ]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._completed_trials:
            self._record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result and not error:
            self._record(trial_id, result)  # Tune hands a trial's last result only to this method
        state, value = self.final_state(trial_id, result, error)
        try:
            # Kept with the trial, so a resumed driver ends a trial it finished the same way.
            epoch = max(int((result or {}).get(self.epoch_key, 0) or 0), self._last_epoch.get(trial_id, 0))
            attrs = {**final_result(result), self.epoch_key: float(epoch)}
            self._ot_trials[trial_id].set_user_attr(FINAL_RESULT_ATTR, json.dumps(attrs))
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        except Exception as exc:  # e.g. the study row was finished by an earlier driver
            logger.warning("could not tell Optuna about trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def _record(self, trial_id: str, result: dict) -> None:
        """Keep the epoch reached and give Optuna the intermediate value at that epoch."""
        if self.metric not in result or trial_id not in self._ot_trials:
            return
        epoch = int(result.get(self.epoch_key, result.get("training_iteration", 0)) or 0)
        if epoch <= self._last_epoch.get(trial_id, 0):
            return  # already reported (e.g. a resumed trial replaying an epoch)
        self._last_epoch[trial_id] = epoch
        value = result[self.metric]
        if isinstance(value, (int, float)) and math.isfinite(value):
            try:
                self._ot_trials[trial_id].report(float(value), epoch)
            except optuna.exceptions.UpdateFinishedTrialError:  # finished by a killed driver
                self._completed_trials.add(trial_id)

    def final_state(self, trial_id: str, result: dict | None, error: bool) -> tuple[TrialState, float | None]:
        """(Optuna state, value) of a finished trial: COMPLETE only if it ran every epoch."""
        if error:
            return TrialState.FAIL, None
        result = result or {}
        epoch = max(int(result.get(self.epoch_key, 0) or 0), self._last_epoch.get(trial_id, 0))
        value = result.get(self.metric)
        finite = isinstance(value, (int, float)) and math.isfinite(value)
        if epoch >= self.max_epochs and finite:
            return TrialState.COMPLETE, float(value)
        return (TrialState.PRUNED, None) if epoch > 0 else (TrialState.FAIL, None)


def make_sampler(settings: SweepSettings) -> optuna.samplers.BaseSampler:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # group=True
    if settings.searcher == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    # Optuna 5 defaults changed (constant_liar on, multivariate unset): be explicit. `group` lets
    # the multivariate model handle conditional parameters.
    return optuna.samplers.TPESampler(
        seed=settings.seed,
        multivariate=True,
        group=True,
        constant_liar=True,
        n_startup_trials=settings.n_startup_trials,
    )


def optuna_storage(url: str) -> optuna.storages.BaseStorage | None:
    """An RDB storage for `sqlite:///...` (or any SQLAlchemy URL); None = in memory."""
    if not url:
        return None
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}} if "sqlite" in url else {})


def make_searcher(
    space: SearchSpace, settings: SweepSettings, max_epochs: int, storage_url: str = "", study_name: str = ""
) -> PrunedAwareOptunaSearch:
    """The sweep's searcher: define-by-run over `space`, persisted in `storage_url` as `study_name`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return PrunedAwareOptunaSearch(
        space=space,
        metric=settings.metric,
        mode=settings.resolved_mode(),
        sampler=make_sampler(settings),
        study_name=study_name or None,
        storage=optuna_storage(storage_url),
        max_epochs=max_epochs,
    )
