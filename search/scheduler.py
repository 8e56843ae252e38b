"""ASHA whose rungs survive a restart of the sweep driver.

Tune pickles a sweep's scheduler once, with the tuner, when the sweep starts; `Tuner.restore` gives
that empty scheduler back, so a resumed sweep's ASHA has no rung records: until they fill up again
it stops nothing, and trials the killed driver's ASHA would have stopped train on to the end.

On restore Tune adds every saved trial to the scheduler again (`on_trial_add`), with its storage.
`ResumableASHA` then reads the epochs that trial already reported (its `result.json`, where Tune
writes every result) into its bracket's rungs, as they would have been recorded live, and decides
nothing about them: the decisions were made by the killed driver. A new trial has no results file
and is added as ASHA adds it. With several brackets (`brackets` > 1), a restored trial joins a
bracket drawn again, as ASHA draws one for each new trial; the killed driver's draw is not saved.
"""

from __future__ import annotations

import json
import logging
import math

from ray.tune.schedulers import AsyncHyperBandScheduler

logger = logging.getLogger(__name__)
RESULT_FILE = "result.json"  # ray.air.constants.EXPR_RESULT_FILE: one JSON line per reported result


class ResumableASHA(AsyncHyperBandScheduler):
    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        bracket = self._trial_info[trial.trial_id]
        for result in reported_results(trial):
            time, value = result.get(self._time_attr), result.get(self._metric)
            if isinstance(time, (int, float)) and isinstance(value, (int, float)) and math.isfinite(value):
                bracket.on_result(trial, time, self._metric_op * value)  # recorded once per rung

    def rung_records(self) -> list[dict[float, dict[str, float]]]:
        """Per bracket: {milestone: {trial id: recorded value (in max mode)}}, for tests and debugging."""
        return [{milestone: dict(recorded) for milestone, recorded in b._rungs} for b in self._brackets]


def reported_results(trial) -> list[dict]:
    """The results a trial reported before this driver started (its result.json), oldest first;
    none for a new trial. Unreadable lines are skipped (a driver killed mid-write cuts the last)."""
    storage = getattr(trial, "storage", None)
    if storage is None or getattr(storage, "trial_dir_name", None) is None:
        return []  # a new trial: Tune names its folder when it first starts it
    path = f"{storage.trial_fs_path}/{RESULT_FILE}"
    try:
        with storage.storage_filesystem.open_input_stream(path) as stream:
            text = stream.read().decode(errors="replace")
    except OSError:  # FileNotFoundError included: nothing reported yet
        return []
    results = []
    for line in text.splitlines():
        try:
            results.append(json.loads(line))
        except ValueError:
            logger.warning("ASHA: skipped an unreadable line of %s", path)
    return results
