"""The searcher's and the driver's side of `--resume` (no Ray needed): a restored searcher takes over
the suggestions a killed driver made after its last save, and knows the trials that driver finished;
a resumed driver refuses to run beside a live one and stops what a killed one left running."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.resume import (
    FINAL_RESULT_ATTR,
    DriverRecord,
    processes_of,
    start_ticks,
    take_over,
    this_host,
)
from search.searcher import make_searcher
from search.space import load_space
from search.sweep import SweepError


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


def _process(session) -> subprocess.Popen:
    """A stand-in for one of a driver's local Ray processes: it holds a log of the session folder open."""
    (session / "logs").mkdir(parents=True, exist_ok=True)
    code = "import sys, time; log = open(sys.argv[1], 'a'); time.sleep(600)"
    return subprocess.Popen([sys.executable, "-c", code, str(session / "logs" / "worker.out")])


def test_a_resumed_driver_refuses_a_live_one_and_stops_what_a_killed_one_left_running(tmp_path, capsys):
    driver = _process(tmp_path / "session_live")
    killed = _process(tmp_path / "session_x")
    killed.kill()
    killed.wait()
    session = str(tmp_path / "session_killed")
    orphan, stranger = _process(tmp_path / "session_killed"), _process(tmp_path / "session_killed2")
    try:
        while not processes_of(session):  # the log is open once the interpreter is up
            time.sleep(0.05)
        live = DriverRecord(this_host(), driver.pid, start_ticks(driver.pid), str(tmp_path / "session_live"))
        with pytest.raises(
            SweepError, match=rf"still running: its driver \(pid {driver.pid}\) is alive.*kill {driver.pid}"
        ):
            take_over(live, "s")
        take_over(dataclasses.replace(live, ended=True), "s")  # a notebook that ran the sweep and moved on
        assert driver.poll() is None

        dead = DriverRecord(this_host(), killed.pid, started=1, ray_session=session)
        take_over(dataclasses.replace(dead, ray_session=""), "s")  # it joined a cluster: nothing to stop
        assert orphan.poll() is None
        take_over(dead, "s")
        assert orphan.wait(30) is not None  # stopped (SIGTERM) ...
        assert stranger.poll() is None  # ... and nothing else (session_killed2 is not session_killed)
        assert f"pids {orphan.pid}); stopping them" in capsys.readouterr().out
        take_over(dead, "s")  # nothing left: nothing to say
        assert capsys.readouterr().out == ""
    finally:
        for p in (driver, orphan, stranger):
            p.kill()
            p.wait()
