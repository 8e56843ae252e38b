"""Fault scenarios shared by tests/faults and benchmarks/faults.py (one copy of each injection).

Each scenario runs real components (a `gsenet search` driver process with its own local Ray, the
sweep's optuna.db and MLflow store), injects the fault for real and returns what was kept, so the
test asserts on it and the benchmark tabulates it.

    outcome = driver_kills(folder, dataset, kill_points=("first_report", "after_prune"))
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_EPOCHS = 2
NUM_SAMPLES = 3

# A tiny sweep (width 0.25, 2 steps per epoch, 2 epochs): every kill point is reached in seconds
# (a driver's time goes on starting Ray and the trials, not on training). One trial at a time, so
# the order of reports, hence ASHA's prune, is the same every run: with seed 3 the second trial
# (lr 3.8e-4) is worse at epoch 1 than the first (lr 1.3e-3) and is pruned (measured: val_si_sdr
# 12.26079 against 12.26091 dB; the trials are seeded, on 1 CPU thread each) -- by the driver that
# saw the first trial's epoch-1 report: ASHA's rungs start empty in a resumed driver.
SWEEP_SPACE = f"""
description: faults - tiny sweep killed and resumed
fixed:
  train.epochs: {MAX_EPOCHS}
  train.steps_per_epoch: 2
  train.metric_subset: 1
  train.keep_checkpoints: 2
  train.log_every: 100
  model.width_multiplier: 0.25
  model.dilation_depth: 1
  data.segment_seconds: 0.5
  data.batch_size: 2
  data.val_max_recordings: 1
sweep:
  metric: val_si_sdr
  num_samples: {NUM_SAMPLES}
  max_concurrent: 1
  grace_period: 1
  reduction_factor: 2
  brackets: 1
  n_startup_trials: 2
  seed: 3
  register_model: ""
parameters:
  optim.lr: {{type: loguniform, low: 1.0e-4, high: 1.0e-2}}
  loss.si_sdr: {{type: uniform, low: 0.0, high: 0.5}}
"""


# ----------------------------------------------------------------------------------------------
# What the sweep's stores say (read straight from the SQLite files: no driver state involved)
# ----------------------------------------------------------------------------------------------
def _open_store(db: Path) -> sqlite3.Connection:
    """A connection to a sweep's SQLite store (optuna.db, mlflow.db) that can read it after a kill.

    Not read-only: a writer SIGKILLed mid-transaction leaves a hot journal, which SQLite rolls back
    on the next read, and a read-only connection cannot (SQLITE_READONLY_ROLLBACK: a full run failed
    so after the resumed driver stopped the killed one's trial workers). mode=rw never creates a file."""
    return sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)


def optuna_trials(db: Path) -> list[dict]:
    """[{number, state, ray_trial_id, epochs}] of every trial in optuna.db ([] before it exists)."""
    if not db.is_file():
        return []
    with contextlib.closing(_open_store(db)) as con:
        try:
            rows = con.execute("SELECT trial_id, number, state FROM trials").fetchall()
            attrs = dict(
                con.execute("SELECT trial_id, value_json FROM trial_user_attributes WHERE key = 'ray_trial_id'")
            )
            steps: dict[int, list[int]] = {}
            for trial_id, step in con.execute("SELECT trial_id, step FROM trial_intermediate_values"):
                steps.setdefault(trial_id, []).append(step)
        except sqlite3.OperationalError:  # tables not created yet
            return []
    return [
        {
            "number": number,
            "state": state,
            "ray_trial_id": (attrs.get(tid) or '""').strip('"'),
            "epochs": max(steps.get(tid, [0])),
        }
        for tid, number, state in rows
    ]


def _training_started(storage: Path, trial: dict) -> bool:
    return any((storage / "killed" / "train_runs").glob(f"killed-{trial['ray_trial_id']}/*"))


KILL_POINTS: dict[str, Callable[[list[dict], list[dict], Path], bool]] = {
    # each: (Optuna trials now, when this driver started, storage folder) -> kill now?
    "first_report": lambda now, before, storage: any(
        t["state"] == "RUNNING" and t["epochs"] == 0 and _training_started(storage, t) for t in now
    ),
    "mid_trial": lambda now, before, storage: any(
        t["state"] == "RUNNING" and 0 < t["epochs"] < MAX_EPOCHS for t in now
    ),
    "after_prune": lambda now, before, storage: (
        sum(t["state"] == "PRUNED" for t in now) > sum(t["state"] == "PRUNED" for t in before)
    ),
    "final_report": lambda now, before, storage: any(
        t["state"] == "RUNNING" and t["epochs"] >= MAX_EPOCHS for t in now
    ),
}


def mlflow_children(db: Path) -> list[dict]:
    """[{run_id, status, trial_id, state}] of every trial child run in the MLflow SQLite store."""
    with contextlib.closing(_open_store(db)) as con:
        runs = con.execute("SELECT run_uuid, status, lifecycle_stage FROM runs").fetchall()
        tags: dict[str, dict[str, str]] = {}
        for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run_id, {})[key] = value
    return [
        {
            "run_id": run_id,
            "status": status,
            "deleted": stage == "deleted",
            "trial_id": tags.get(run_id, {}).get("gsenet.trial_id", ""),
            "state": tags.get(run_id, {}).get("gsenet.trial_state", ""),
        }
        for run_id, status, stage in runs
        if "gsenet.trial_id" in tags.get(run_id, {})
    ]


# ----------------------------------------------------------------------------------------------
# The driver, killed at chosen moments and resumed
# ----------------------------------------------------------------------------------------------
@dataclass
class KillOutcome:
    kills: list[tuple[str, float]] = field(default_factory=list)  # (kill point, seconds into that driver)
    resume_s: list[float] = field(default_factory=list)  # wall time of each resumed driver
    # per resumed driver: seconds from its start until the study moved on (a new epoch or trial end)
    recover_s: list[float | None] = field(default_factory=list)
    # per resumed driver: processes of the killed driver (its local Ray) alive when it started, and
    # when it first made progress, or was killed or ended before that (must be 0: nothing of the old
    # sweep trains beside the new one)
    orphans_at_start: list[int] = field(default_factory=list)
    orphans_at_progress: list[int] = field(default_factory=list)
    returncode: int = -1
    output: str = ""
    optuna: list[dict] = field(default_factory=list)
    mlflow: list[dict] = field(default_factory=list)
    epochs_trained: dict[str, list[int]] = field(default_factory=dict)  # trial id -> epochs its MLflow run logged
    # per kill: trial id -> epochs logged by the time the killed driver's processes were all gone,
    # of the trials Optuna had as finished at the kill
    finished_at_kill: list[dict[str, int]] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # the final report's results.csv
    missed: list[str] = field(default_factory=list)  # kill points the sweep ended before reaching
    left_behind: list[int] = field(default_factory=list)  # processes of any driver alive at the end


def _driver_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _moved_on(now: list[dict], before: list[dict]) -> bool:
    """A new epoch reported or a trial finished since `before` (the sweep makes progress again)."""
    old = {t["number"]: (t["state"], t["epochs"]) for t in before}
    return any(old.get(t["number"], ("RUNNING", 0)) != (t["state"], t["epochs"]) for t in now)


def _session_members(sid: int) -> list[int]:
    """Live processes of session `sid`: a driver started with start_new_session=True and the local
    Ray it started (Ray's processes keep the session, whatever their process group)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # a zombie holds nothing any more
                members.append(int(stat.parent.name))
    return members


def _kill_tree(driver: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """SIGKILL the driver and the local Ray it started (its own session), and wait until every
    process of that session is gone (clean-up: nothing of a test may outlive it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        for pid in _session_members(driver.pid):  # Ray processes in other process groups
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if driver.poll() is not None and not _session_members(driver.pid):
            break
        time.sleep(0.2)
    driver.wait(60)


# A driver that did not start for reasons of a loaded box, not of gsenet: start it again.
START_UP_FAILURES = ("timed out during startup", "Failed to start the dashboard")


@dataclass
class _Kill:
    """The driver killed last: its session (what may still run of it) and Optuna's finished trials then."""

    sid: int
    done: set[str]
    snapshot_taken: bool = False


def driver_kills(
    folder: Path, dataset: Path, kill_points: tuple[str, ...], timeout_s: float = 400.0, poll_s: float = 0.1
) -> KillOutcome:
    """Start `gsenet search` on a tiny sweep, SIGKILL it (the driver process only, as a user's
    `kill -9` would: the local Ray it started is left to itself) at each kill point in turn,
    resuming at once with `gsenet search --resume` after each, then let the last driver finish."""
    folder.mkdir(parents=True, exist_ok=True)
    space = folder / "faults_space.yaml"
    space.write_text(SWEEP_SPACE)
    storage, mlflow_db = folder / "runs", folder / "mlflow.db"
    common = ["--storage-path", str(storage), "--progress-every", "600"]
    start = [
        *("--space", str(space), "--data", str(dataset), "--name", "killed"),
        *("--mlflow-uri", f"sqlite:///{mlflow_db}", "--set", "train.cpus_per_worker=1"),
    ]
    outcome, logs, drivers = KillOutcome(), [], []
    optuna_db = folder / "optuna.db"

    def snapshot_once_gone(killed: _Kill | None) -> None:
        """Epochs logged by the killed driver's finished trials, once nothing of it runs any more."""
        if killed is None or killed.snapshot_taken or _session_members(killed.sid):
            return
        logged = mlflow_epochs(mlflow_db)
        outcome.finished_at_kill.append({tid: len(logged.get(tid, [])) for tid in killed.done})
        killed.snapshot_taken = True

    def _run_driver(args, log_path, point, before, killed):
        """One `gsenet search` process, SIGKILLed when `point` is reached; returns (driver, start, the
        seconds until it made progress, the _Kill if it was killed)."""
        t0, progressed = time.monotonic(), None
        with open(log_path, "wb") as log:
            driver = subprocess.Popen(
                [sys.executable, "-m", "gsenet", "search", *args],
                cwd=ROOT, env=_driver_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            drivers.append(driver)
            counted = killed is None

            def orphans_now() -> None:
                nonlocal counted
                if not counted:
                    outcome.orphans_at_progress.append(len(_session_members(killed.sid)))
                    counted = True

            if killed is not None:
                outcome.orphans_at_start.append(len(_session_members(killed.sid)))
            try:
                while driver.poll() is None and time.monotonic() - t0 < timeout_s:
                    now = optuna_trials(optuna_db)
                    snapshot_once_gone(killed)
                    if progressed is None and before is not None and _moved_on(now, before):
                        progressed = time.monotonic() - t0
                        orphans_now()
                    # Not before the killed driver's processes are gone: a kill inside take_over (a full
                    # run hit one, 1 s into a resume) would count them as left to train beside it.
                    past_take_over = killed is None or not _session_members(killed.sid)
                    if point and past_take_over and KILL_POINTS[point](now, before, storage):
                        orphans_now()
                        driver.kill()  # the driver only
                        driver.wait(60)
                        outcome.kills.append((point, time.monotonic() - t0))
                        done = {t["ray_trial_id"] for t in optuna_trials(optuna_db) if t["state"] != "RUNNING"}
                        return driver, t0, progressed, _Kill(driver.pid, done)
                    time.sleep(poll_s)
            finally:
                orphans_now()
                if driver.poll() is None or not point:
                    _kill_tree(driver)  # timed out, or ended: nothing of it may stay
        snapshot_once_gone(killed)
        return driver, t0, progressed, None

    try:
        killed = None
        for i, point in enumerate((*kill_points, None)):
            args = start if i == 0 else ["--resume", "killed"]
            before = optuna_trials(optuna_db)
            for attempt in range(3):  # a start-up failure of a loaded box: start again
                log_path = folder / f"driver{i}{'abc'[attempt] if attempt else ''}.log"
                logs.append(log_path)
                driver, started, progressed, now_killed = _run_driver(args + common, log_path, point, before, killed)
                if driver.returncode == 0 or now_killed is not None:
                    break
                if not any(text in log_path.read_text(errors="replace") for text in START_UP_FAILURES):
                    break
            if i > 0:
                outcome.resume_s.append(time.monotonic() - started)
                outcome.recover_s.append(progressed)
            outcome.returncode = driver.returncode
            killed = now_killed
            if point and killed is None:
                outcome.missed.append(point)
                break
    finally:
        outcome.left_behind = [pid for d in drivers for pid in _session_members(d.pid)]
        for d in drivers:
            _kill_tree(d)
    outcome.output = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in logs)
    outcome.optuna = optuna_trials(optuna_db)
    outcome.mlflow = mlflow_children(mlflow_db) if mlflow_db.is_file() else []
    outcome.epochs_trained = mlflow_epochs(mlflow_db) if mlflow_db.is_file() else {}
    results = storage / "killed" / "report" / "results.csv"
    if results.is_file():
        import csv

        with open(results, newline="") as f:
            outcome.rows = list(csv.DictReader(f))
    return outcome


def mlflow_epochs(db: Path) -> dict[str, list[int]]:
    """Trial id -> every `epoch` value its child run logged, in order (an epoch trained again shows twice)."""
    with contextlib.closing(_open_store(db)) as con:
        trial_of = dict(con.execute("SELECT run_uuid, value FROM tags WHERE key = 'gsenet.trial_id'"))
        rows = con.execute("SELECT run_uuid, value FROM metrics WHERE key = 'epoch' ORDER BY timestamp, step")
        epochs: dict[str, list[int]] = {}
        for run_id, value in rows:
            if run_id in trial_of:
                epochs.setdefault(trial_of[run_id], []).append(int(value))
    return epochs


# ----------------------------------------------------------------------------------------------
# A trial driver hit by a transient fault (MLflow down at its start) or one that cannot go away
# ----------------------------------------------------------------------------------------------
ONE_TRIAL_SPACE = SWEEP_SPACE.replace(f"num_samples: {NUM_SAMPLES}", "num_samples: 1").replace(
    f"train.epochs: {MAX_EPOCHS}", "train.epochs: 1"
)


@dataclass
class RetryOutcome:
    report: object = None  # search.report.SweepReport
    plan: object = None
    attempts: int = 0  # failed attempts of the trial driver (its trial_errors/<id>.attempts)
    permanent: str = ""  # trial_errors/<id>.txt: the error no retry could fix
    outage_s: float = 0.0  # how long MLflow was down
    recovered_s: float = 0.0  # from MLflow answering again to the sweep's end
    server: object = None  # the MLflow server (running again; the caller stops it)


def one_trial_sweep(
    folder: Path, dataset: Path, mlflow_uri: str, name: str, fixed: dict | None = None, text: str = ONE_TRIAL_SPACE
):
    """The plan of a 1-trial, 1-epoch sweep (a new one in folder/runs)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    from search.space import parse_space
    from search.sweep import new_plan

    space = parse_space(yaml.safe_load(text), source=str(folder / f"{name}.yaml"), text=text)
    return new_plan(
        space,
        space.settings(),
        name=name,
        storage_path=str(folder / "runs"),
        cli_fixed={"data.path": str(dataset), **(fixed or {})},
        mlflow_uri=mlflow_uri,
    )


def _trial_records(plan) -> tuple[int, str]:
    errors = Path(plan.train_storage) / "trial_errors"
    attempts = sum(int(p.read_text()) for p in errors.glob("*.attempts"))
    permanent = "\n".join(p.read_text() for p in errors.glob("*.txt"))
    return attempts, permanent


def mlflow_down_at_trial_start(folder: Path, dataset: Path, ray_address: str, outage_s: float = 8.0) -> RetryOutcome:
    """A real MLflow server, stopped as soon as the sweep's parent run exists (so the trial driver
    finds it down when it starts) and started again on the same port after `outage_s`."""
    import threading

    from fixtures.mlflow_server import start_mlflow_server

    from search.sweep import run_sweep

    server = start_mlflow_server(folder / "mlflow")
    plan = one_trial_sweep(folder, dataset, server.uri, "mlflow-down")
    outcome = RetryOutcome(plan=plan, server=server)
    back_at: list[float] = []

    def outage() -> None:
        while not plan.parent_run_id:  # run_sweep sets it once the parent run is created
            time.sleep(0.05)
        server.stop()
        down = time.monotonic()
        time.sleep(outage_s)
        outcome.server = start_mlflow_server(folder / "mlflow", port=server.port)
        outcome.outage_s = time.monotonic() - down
        back_at.append(time.monotonic())

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    try:
        outcome.report = run_sweep(plan, address=ray_address, interval_s=600)
        outcome.recovered_s = time.monotonic() - back_at[0] if back_at else float("nan")
    except BaseException:
        thread.join(300)
        outcome.server.stop()
        raise
    thread.join(300)
    outcome.attempts, outcome.permanent = _trial_records(plan)
    return outcome


def permanent_trial_error(folder: Path, dataset: Path, ray_address: str, mlflow_uri: str) -> RetryOutcome:
    """A trial whose loss is non-finite at step 1 (optim.lr 1e30): an error no retry fixes."""
    from search.sweep import run_sweep

    text = ONE_TRIAL_SPACE.replace("optim.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}", "")
    plan = one_trial_sweep(folder, dataset, mlflow_uri, "diverges", {"optim.lr": 1e30}, text=text)
    outcome = RetryOutcome(plan=plan)
    outcome.report = run_sweep(plan, address=ray_address, interval_s=600)
    outcome.attempts, outcome.permanent = _trial_records(plan)
    return outcome


# ----------------------------------------------------------------------------------------------
# A worker node drained (spot preemption notice) and then stopped mid-trial, on a local cluster
# ----------------------------------------------------------------------------------------------
# Long enough that the drain (found after the first checkpoint, sent by `ray drain-node`, a few
# seconds) lands mid-trial: with 6 steps an idle box had trained all 3 epochs by then, and with 3
# epochs of 40 steps a quiet one still finished first once (1 Dec 2026). 8 epochs leave ~7 epochs
# of margin for the drain whatever the load (it slows the drain and the training alike).
DRAIN_STEPS_PER_EPOCH = 40
DRAIN_EPOCHS = 8


@dataclass
class NodeLossOutcome:
    report: object = None
    plan: object = None
    lost_node: str = ""  # the node that held the trial's Train worker
    preempted_checkpoint: str = ""  # the just-in-time checkpoint written after the drain notice
    recover_s: float = 0.0  # from the node stopping to the sweep's end


def _train_worker_node(dashboard: str) -> str:
    from ray.util.state import list_actors

    filters = [("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
    alive = list_actors(address=dashboard, filters=filters)  # this cluster's State API, not another Ray's
    return alive[0].node_id if alive else ""


def worker_node_drained_and_stopped(folder: Path, dataset: Path, drain: bool = True) -> NodeLossOutcome:
    """One trial whose only Train worker runs on the cluster's one worker node (the head's CPU is
    held by a blocker task): after its first checkpoint the node gets a preemption drain notice
    (`ray drain-node`), and once the just-in-time checkpoint is written (or 60 s passed) the node is
    stopped (SIGKILL of its processes) and the head's CPU freed, where Train restarts the worker."""
    import re
    import threading

    import ray
    from fixtures.ray_cluster import HEAD_IP, RAY, running_ray_cluster, wait_for_nodes
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from search.sweep import run_sweep

    text = ONE_TRIAL_SPACE.replace("train.epochs: 1", f"train.epochs: {DRAIN_EPOCHS}").replace(
        "train.steps_per_epoch: 2", f"train.steps_per_epoch: {DRAIN_STEPS_PER_EPOCH}\n  train.preemption_check_every: 1"
    )
    outcome = NodeLossOutcome()
    env = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "180"}
    # Generous start-up limits: two nodes on 2 loaded cores take minutes, not seconds.
    with running_ray_cluster({"TRAIN_DRIVER": 100}, [{"worker_node": 1}], env=env, start_timeout=300) as cluster:
        try:
            ray.init(address=cluster.address, _node_ip_address=HEAD_IP)
            nodes = wait_for_nodes(2, timeout=300)
            head = next(n["NodeID"] for n in nodes if n["Resources"].get("TRAIN_DRIVER", 0) > 0)
            ip_of = {n["NodeID"]: n["NodeManagerAddress"] for n in nodes}
            # The head's CPU stays busy, so the Train worker runs on a (preemptible) worker node.
            blocker = ray.remote(num_cpus=1)(lambda: time.sleep(3600)).options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)
            )
            busy = blocker.remote()
            plan = one_trial_sweep(folder, dataset, f"sqlite:///{folder / 'mlflow.db'}", "drained", text=text)
            outcome.plan = plan
            stopped_at: list[float] = []

            def preempt() -> None:
                snapshot = None
                while snapshot is None:
                    found = list(Path(plan.train_storage).glob("drained-*/checkpoint_manager_snapshot.json"))
                    if found and "checkpoint_dir_name" in found[0].read_text():
                        snapshot = found[0]
                    time.sleep(0.2)
                node = _train_worker_node(f"http://127.0.0.1:{cluster.dashboard_port}")
                outcome.lost_node = node
                if drain:
                    subprocess.run(
                        [RAY, "drain-node", f"--address={cluster.address}", f"--node-id={node}",
                         "--reason=DRAIN_NODE_REASON_PREEMPTION", "--reason-message=spot reclaim",
                         "--deadline-remaining-seconds=30"],
                        check=False, capture_output=True, timeout=60,
                    )  # fmt: skip
                    deadline = time.monotonic() + 60
                    # registered by Train's controller (what a restart resumes from), not just on disk
                    while time.monotonic() < deadline and "_preempted" not in snapshot.read_text():
                        time.sleep(0.2)
                    # Its name as registered now: Ray may delete the folder later (keep_checkpoints).
                    names = re.findall(r"checkpoint_\d+_preempted", snapshot.read_text())
                    outcome.preempted_checkpoint = names[-1] if names else ""
                index = [p.args[4] for p in cluster.processes].index(f"--node-ip-address={ip_of[node]}")
                os.killpg(cluster.processes[index].pid, signal.SIGKILL)  # the node is gone
                stopped_at.append(time.monotonic())
                ray.cancel(busy, force=True)  # the head's CPU: where the worker group restarts

            thread = threading.Thread(target=preempt, daemon=True)
            thread.start()
            outcome.report = run_sweep(plan, address=cluster.address, interval_s=600)
            outcome.recover_s = time.monotonic() - stopped_at[0] if stopped_at else float("nan")
            thread.join(60)
        except Exception as exc:
            raise AssertionError(f"{exc}\n\nRay node logs:\n{cluster.logs()}") from exc
        finally:
            ray.shutdown()
    runs = list(Path(plan.train_storage).glob("drained-*"))
    preempted = sorted(p.name for r in runs for p in r.glob("*_preempted"))
    outcome.preempted_checkpoint = preempted[-1] if preempted else outcome.preempted_checkpoint
    return outcome
