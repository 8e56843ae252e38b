"""The searcher's side of `--resume` (no Ray needed): a restored searcher takes over the
suggestions a killed driver made after its last save, and knows the trials that driver finished."""

from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState

from search.resume import FINAL_RESULT_ATTR
from search.searcher import make_searcher
from search.space import load_space


def test_a_restored_searcher_reuses_orphan_suggestions_and_skips_finished_trials(tmp_path):
    space = load_space("smoke")
    settings = space.settings(num_samples=4, seed=0)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = make_searcher(space, settings, max_epochs=2, storage_url=storage, study_name="s")
    a, b = first.suggest("a"), first.suggest("b")
    first.save(str(tmp_path / "searcher.pkl"))  # Tune's last save
    # After it, the killed driver finished "a" (told PRUNED) and suggested for "c" (never saved).
    first.on_trial_result("a", {"epoch": 1, "val_si_sdr": 3.0})
    first.on_trial_complete("a", {"epoch": 1, "val_si_sdr": 3.0})
    orphan = first.suggest("c")

    resumed = make_searcher(space, settings, max_epochs=2, storage_url=storage, study_name="s")
    resumed.restore(str(tmp_path / "searcher.pkl"))
    assert "a" in resumed._completed_trials  # not told again (which Optuna refuses)
    resumed.on_trial_complete("a", {"epoch": 2, "val_si_sdr": 9.0})
    again = resumed.suggest("d")  # the next new trial takes over the orphan suggestion
    assert again == orphan and again not in (a, b)
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 3  # no extra suggestion
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert set(by_id) == {"a", "b", "d"}
    assert by_id["a"].state == TrialState.PRUNED
    assert json.loads(by_id["a"].user_attrs[FINAL_RESULT_ATTR]) == {"epoch": 1.0, "val_si_sdr": 3.0}
