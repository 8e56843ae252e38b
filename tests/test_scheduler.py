"""search/scheduler.py: a resumed sweep's ASHA gets back the rung records of the trials the killed
driver saw, from the trials' own result.json (driven through the scheduler interface Tune uses:
on_trial_add with each restored trial, then on_trial_result)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow.fs
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from search.scheduler import ResumableASHA

ASHA = dict(time_attr="epoch", metric="val_si_sdr", mode="max", max_t=4, grace_period=1, reduction_factor=2)


def trial(tmp_path, trial_id: str, results: list[dict] | None = None):
    """A Tune trial as the scheduler sees one: its id and its storage (result.json, if it reported)."""
    folder = tmp_path / trial_id
    folder.mkdir()
    if results is not None:
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    storage = SimpleNamespace(
        trial_dir_name=folder.name, trial_fs_path=str(folder), storage_filesystem=pyarrow.fs.LocalFileSystem()
    )
    return SimpleNamespace(trial_id=trial_id, storage=storage)


def restored_trials(tmp_path) -> list:
    """Three trials the killed driver ran: epochs 1-2 reported, values 10 / 12 / 14 at epoch 1."""
    return [
        trial(tmp_path, f"t{i}", [{"epoch": 1, "val_si_sdr": 10.0 + 2 * i}, {"epoch": 2, "val_si_sdr": 11.0 + 2 * i}])
        for i in range(3)
    ]


@pytest.mark.parametrize("scheduler_type", [AsyncHyperBandScheduler, ResumableASHA])
def test_a_poor_new_trial_is_stopped_only_by_the_asha_that_got_its_rungs_back(tmp_path, scheduler_type):
    scheduler = scheduler_type(**ASHA)
    for restored in restored_trials(tmp_path):
        scheduler.on_trial_add(None, restored)  # what Tune does with each saved trial on restore
    new = trial(tmp_path, "new")
    scheduler.on_trial_add(None, new)
    decision = scheduler.on_trial_result(None, new, {"epoch": 1, "val_si_sdr": 9.0})
    # The killed driver's ASHA had 10, 12 and 14 at the first rung: 9 is below its cut-off. Plain ASHA,
    # restored empty, has nothing recorded there and lets the trial go on.
    expected = TrialScheduler.STOP if scheduler_type is ResumableASHA else TrialScheduler.CONTINUE
    assert decision == expected


def test_rungs_are_recorded_as_live_once_per_trial_and_skip_what_is_not_a_result(tmp_path):
    scheduler = ResumableASHA(**ASHA)
    restored = restored_trials(tmp_path)
    for each in restored:
        scheduler.on_trial_add(None, each)
    odd = trial(tmp_path, "odd", [{"epoch": 1, "val_si_sdr": float("nan")}, {"step": 3}])
    with open(tmp_path / "odd" / "result.json", "a") as f:
        f.write('{"epoch": 2, "val_si')  # the last line of a write cut by SIGKILL
    scheduler.on_trial_add(None, odd)
    [rungs] = scheduler.rung_records()
    assert rungs == {4: {}, 2: {"t0": 11.0, "t1": 13.0, "t2": 15.0}, 1: {"t0": 10.0, "t1": 12.0, "t2": 14.0}}

    # Tune adds a trial again when it retries it: its results are not recorded twice, and an epoch
    # it reports again after resuming from a checkpoint keeps the value recorded first.
    scheduler.on_trial_add(None, restored[1])
    assert scheduler.on_trial_result(None, restored[1], {"epoch": 2, "val_si_sdr": -100.0}) == TrialScheduler.CONTINUE
    assert scheduler.rung_records() == [rungs]


def test_a_new_trial_whose_folder_tune_has_not_named_yet_is_added_as_asha_adds_it(tmp_path):
    from ray.train._internal.storage import StorageContext

    scheduler = ResumableASHA(**ASHA)
    storage = StorageContext(str(tmp_path), "sweep")  # as Tune creates a trial's, before it names the folder
    scheduler.on_trial_add(None, SimpleNamespace(trial_id="fresh", storage=storage))
    assert scheduler.rung_records() == [{4: {}, 2: {}, 1: {}}]


def test_min_mode_records_as_asha_does(tmp_path):
    scheduler = ResumableASHA(**{**ASHA, "metric": "val_loss", "mode": "min"})
    scheduler.on_trial_add(None, trial(tmp_path, "a", [{"epoch": 1, "val_loss": 0.5}]))
    assert scheduler.rung_records()[0][1] == {"a": -0.5}  # ASHA keeps metric_op * value (max internally)
