"""The Optuna searcher tells ASHA-stopped trials as PRUNED (not COMPLETE with a truncated score).

Driven directly through the Searcher interface Tune uses (suggest / on_trial_result /
on_trial_complete), against a real SQLite Optuna study; the Tune + ASHA path is in
tests/integration/test_search.py.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.searcher import make_searcher
from search.space import load_space


def test_stopped_trials_are_pruned_full_ones_complete_errors_fail(tmp_path):
    space = load_space("smoke")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = make_searcher(
        space, space.settings(metric="val_loss"), max_epochs=3, storage_url=storage, study_name="s"
    )
    for trial_id in ("full", "stopped", "stopped_at_first", "crashed"):
        assert set(searcher.suggest(trial_id)) == {p.key for p in space.parameters}
    for epoch, loss in ((1, 0.9), (2, 0.7)):
        searcher.on_trial_result("full", {"epoch": epoch, "val_loss": loss})
    searcher.on_trial_complete("full", {"epoch": 3, "val_loss": 0.5})  # Tune's last result comes only here
    searcher.on_trial_result("stopped", {"epoch": 1, "val_loss": 0.8})
    searcher.on_trial_complete("stopped", {"epoch": 2, "val_loss": 0.75})
    searcher.on_trial_complete("stopped_at_first", {"epoch": 1, "val_loss": 0.95})
    searcher.on_trial_result("crashed", {"epoch": 1, "val_loss": 0.6})
    searcher.on_trial_complete("crashed", {"epoch": 1, "val_loss": 0.6}, error=True)

    study = optuna.load_study(study_name="s", storage=storage)
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert by_id["full"].state == TrialState.COMPLETE and by_id["full"].value == 0.5
    assert by_id["full"].intermediate_values == {1: 0.9, 2: 0.7, 3: 0.5}
    assert by_id["stopped"].state == TrialState.PRUNED
    assert by_id["stopped"].intermediate_values == {1: 0.8, 2: 0.75}
    assert by_id["stopped_at_first"].state == TrialState.PRUNED
    assert by_id["crashed"].state == TrialState.FAIL
    # Ray's own OptunaSearch would have told "stopped" as COMPLETE with 0.75.
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 1


def test_resumed_history_and_seeded_suggestions(tmp_path):
    space = load_space("smoke")
    settings = space.settings(seed=3, metric="val_loss")
    a = make_searcher(space, settings, max_epochs=2)
    b = make_searcher(space, settings, max_epochs=2)
    assert a.suggest("t1") == b.suggest("t1")  # seeded
    a.on_trial_result("t1", {"epoch": 1, "val_loss": 0.9})
    a.save(str(tmp_path / "searcher.pkl"))
    restored = make_searcher(space, settings, max_epochs=2)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("t1", {"epoch": 2, "val_loss": 0.4})
    (trial,) = restored._ot_study.trials
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {1: 0.9, 2: 0.4}
