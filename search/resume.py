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

import contextlib
import dataclasses
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


# ----------------------------------------------------------------------------------------------
# The killed driver's own processes: a local Ray outlives its driver for a while
# ----------------------------------------------------------------------------------------------
# A SIGKILLed `gsenet search` leaves the local Ray it started behind for seconds to a minute (Train
# workers mid-epoch, agents): a `--resume` started at once would share the MLflow runs and storage
# with that orphan. So each driver writes driver.json (host, pid, the session folder of the local Ray
# it started) beside sweep.json; a resumed driver refuses to run beside a live driver and first
# stops what is left of a dead one's Ray: every process of it holds files of that session folder
# open (its logs), whatever its title (Ray's setproctitle clobbers /proc/PID/cmdline and environ).
@dataclass
class DriverRecord:
    """Who runs (or ran) a sweep: enough to tell whether it is alive and to find its processes."""

    host: str  # hostname + boot id: a pid means nothing on another machine or after a reboot
    pid: int
    started: int  # the pid's start time (clock ticks since boot): a reused pid is not the driver
    ray_session: str = ""  # session folder of the local Ray it started; "" if it joined a cluster
    ended: bool = False  # run_sweep returned or raised (a live process that is no longer driving)

    @classmethod
    def from_json(cls, text: str) -> DriverRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


def local_ray_session() -> str:
    """The session folder of the Ray this process started ("" if it cannot tell)."""
    try:
        import ray

        return ray._private.worker._global_node.get_session_dir_path()  # no public API names it
    except Exception:
        return ""


def this_host() -> str:
    import socket
    from pathlib import Path

    boot = Path("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}/{boot.read_text().strip() if boot.is_file() else ''}"


def start_ticks(pid: int) -> int | None:
    """The start time of `pid` from /proc (None: no such process, or a zombie holding nothing)."""
    from pathlib import Path

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def this_driver(ray_session: str) -> DriverRecord:
    """The record of this process as a sweep's driver (`ray_session`: see DriverRecord)."""
    import os

    pid = os.getpid()
    return DriverRecord(host=this_host(), pid=pid, started=start_ticks(pid) or 0, ray_session=ray_session)


def processes_of(session: str) -> list[int]:
    """Live processes (but this one) holding a file of the Ray session folder `session` open."""
    import os
    from pathlib import Path

    inside = session.rstrip("/") + "/"
    found = []
    for fds in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fds.parent.name)
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):  # gone, or another user's
            if any(os.readlink(fd).startswith(inside) for fd in fds.iterdir()) and start_ticks(pid) is not None:
                found.append(pid)
    return found


def driver_alive(record: DriverRecord) -> bool:
    return record.host == this_host() and record.started != 0 and start_ticks(record.pid) == record.started


def stop_processes(pids: list[int], session: str, grace_s: float = 5.0, timeout_s: float = 60.0) -> list[int]:
    """SIGTERM, then after `grace_s` SIGKILL, the processes of `session`; returns those still alive."""
    import os
    import signal
    import time

    deadline, sig = time.monotonic() + timeout_s, signal.SIGTERM
    term_until = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        time.sleep(0.2)
        if time.monotonic() > term_until:
            sig = signal.SIGKILL
        pids = processes_of(session)
    return pids


def take_over(previous: DriverRecord, sweep: str) -> None:
    """Before a resumed driver starts: refuse while `previous` (the sweep's last driver) is alive;
    stop the processes its Ray left behind if it died."""
    import os

    from gsenet.errors import SweepError

    if previous.pid == os.getpid() and previous.host == this_host():
        return  # this process ran the sweep before (a notebook): its Ray is ours
    alive = driver_alive(previous)
    if alive and previous.ended:
        return  # a notebook that ran the sweep and moved on: its Ray is its own
    if alive:
        raise SweepError(
            f"sweep {sweep!r} is still running: its driver (pid {previous.pid}) is alive; "
            f"let it finish or stop it (kill {previous.pid}), then --resume {sweep}"
        )
    if not previous.ray_session:
        return  # it joined a cluster: Ray ends a dead driver's trials there
    if previous.host != this_host():
        print(
            f"resume: the last driver ran on {previous.host.split('/')[0]}; its processes are not checked", flush=True
        )
        return
    left = processes_of(previous.ray_session)
    if not left:
        return
    print(
        f"resume: {len(left)} process(es) of the killed driver's Ray are still running (pids "
        f"{' '.join(map(str, sorted(left)))}); stopping them so they cannot train or log into this sweep",
        flush=True,
    )
    still = stop_processes(left, previous.ray_session)
    if still:
        pids = " ".join(map(str, sorted(still)))
        raise SweepError(
            f"could not stop process(es) {pids} of sweep {sweep!r}'s killed driver: kill -9 {pids}, then --resume {sweep}"
        )
    print("resume: stopped them", flush=True)
