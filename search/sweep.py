"""The sweep driver: Ray Tune + Optuna (TPE) + ASHA over GSENet configs, tracked in MLflow.

One sweep = one Tune experiment at STORAGE/NAME, one Optuna study NAME (in a SQLite file beside
MLflow's), one MLflow parent run. Each trial is a Tune *function* trainable that builds the same
Ray Train `TorchTrainer` as `gsenet train` (Ray 2.60's Tune + Train V2 pattern) and runs it with
Train's `TuneReportCallback`, so every epoch report reaches ASHA. Trial drivers hold a sliver of the
custom resource `TRAIN_DRIVER`, declared only on non-preemptible nodes, so losing a spot GPU node
costs a Train worker group restart, never the trial itself.

Everything a resumed driver needs (settings, space, parent run id, storage) is written to
STORAGE/NAME/sweep.json before the first trial starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsenet import tracking
from gsenet.errors import SweepError  # SweepError: re-exported (search.sweep.SweepError)
from gsenet.runtime import DEFAULT_STORAGE, DRIVER_RESOURCE  # DRIVER_RESOURCE: where trial drivers run
from gsenet.storage import exists_at, read_text_at, write_text_at
from search.space import SearchSpace, SweepSettings, describe, parse_space

TRIAL_DRIVER_RESOURCES = {"CPU": 0, DRIVER_RESOURCE: 0.01}  # a trial's own process: no CPU, pinned
# Tune re-runs a trial driver that failed this many times (its Train run resumes from its
# checkpoints); errors that cannot go away are not retried (once_per_trial).
TRIAL_DRIVER_RETRIES = 5
TRANSIENT_BACKOFF_S = 10.0  # a transiently failed trial driver waits this x attempt (at most 3x) before Tune retries
STATE_FILE = "sweep.json"
DRIVER_FILE = "driver.json"  # who drives the sweep now (search/resume.py)


@dataclass
class SweepPlan:
    """Everything that defines a sweep; saved as sweep.json so `--resume NAME` can rebuild it."""

    name: str
    storage_path: str  # absolute folder (or gs://bucket/prefix) holding the Tune experiment NAME
    space_source: str  # the space file it came from
    space_text: str  # ... and its text, so a resume does not depend on the file still being there
    cli_fixed: dict[str, Any]  # fixed overrides from the command line (data path, workers, GPUs)
    settings: dict[str, Any]  # SweepSettings as a dict
    mlflow_uri: str
    experiment: str  # MLflow experiment
    optuna_storage: str  # SQLAlchemy URL of the Optuna study ("" = in memory)
    parent_run_id: str = ""
    created: float = field(default_factory=time.time)

    @property
    def experiment_path(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    @property
    def train_storage(self) -> str:
        """Where the trials' Ray Train runs (and their checkpoints) live."""
        return f"{self.experiment_path}/train_runs"

    def space(self) -> SearchSpace:
        import yaml

        space = parse_space(yaml.safe_load(self.space_text), source=self.space_source, text=self.space_text)
        return space.with_fixed(self.cli_fixed) if self.cli_fixed else space

    def sweep_settings(self) -> SweepSettings:
        return SweepSettings(**self.settings).validate()

    def max_epochs(self) -> int:
        return self.space().base().train.epochs


@dataclass
class TrialContext:
    """What every trial gets besides its sampled params (passed with tune.with_parameters)."""

    space: SearchSpace
    sweep_name: str
    train_storage: str
    mlflow_uri: str
    experiment: str
    parent_run_id: str
    max_epochs: int
    metric: str = "val_si_sdr"  # the sweep's metric: also what each trial keeps checkpoints and best_model by
    mode: str = "max"
    seed: int = 0
    # On --resume: trials the killed driver already finished -> the result they ended with
    # (search/resume.py). They report it again instead of training again.
    finished: dict[str, dict[str, float]] = field(default_factory=dict)


def once_per_trial(trial_fn: Callable) -> Callable:
    """`trial_fn`, except for a trial a killed driver already finished: that one only reports the
    final result it ended with (so Tune, the table and MLflow end it the same way) and returns."""
    import functools

    @functools.wraps(trial_fn)  # same name: Tuner.restore requires the trainable it saved
    def trial(config: dict[str, Any], ctx: TrialContext) -> None:
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
        done = ctx.finished.get(trial_id)
        if done:
            tune.report(dict(done))
            return
        with retried_only_if_transient(f"{ctx.train_storage}/{TRIAL_ERRORS_DIR}/{trial_id}"):
            trial_fn(config, ctx)

    return trial


TRIAL_ERRORS_DIR = "trial_errors"  # beside the Train runs: <trial id>.txt (permanent), <trial id>.attempts


@contextlib.contextmanager
def retried_only_if_transient(record: str):
    """Around a trial driver that Tune retries (FailureConfig max_failures > 0): an error that
    cannot go away (a GSENetError other than a TransientError) is written to RECORD.txt, and every
    retry of that trial fails at once with it instead of training again; a transient one (a lost
    process, MLflow not answering) waits a little longer each attempt, then lets Tune retry."""
    from gsenet.failures import cannot_go_away

    if exists_at(f"{record}.txt"):
        raise SweepError(f"{read_text_at(f'{record}.txt')} (not retried: it fails the same way every time)")
    try:
        yield
    except BaseException as exc:
        permanent = cannot_go_away(exc)
        if permanent is not None:
            write_text_at(f"{record}.txt", str(permanent))
        elif isinstance(exc, Exception):
            attempts = int(read_text_at(f"{record}.attempts")) + 1 if exists_at(f"{record}.attempts") else 1
            write_text_at(f"{record}.attempts", str(attempts))
            print(f"trial driver failed (attempt {attempts}; retried): {exc}", flush=True)
            time.sleep(TRANSIENT_BACKOFF_S * min(attempts, 3))
        raise


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable: build and fit the same TorchTrainer as `gsenet train`."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from gsenet.train import build_trainer

    trial_id = tune.get_context().get_trial_id()
    cfg = ctx.space.trial_config(config)
    # The Train run name comes from the trial id (no timestamps): a restarted or resumed trial
    # finds its own checkpoints at (storage_path, name) and continues from them.
    cfg.train.name = train_run_name(ctx.sweep_name, trial_id)
    already = _finished_train_run(f"{ctx.train_storage}/{cfg.train.name}", cfg.train.epochs)
    if already is not None and _trial_run_closed(ctx, trial_id):
        # Trained, models logged, its MLflow run closed; only the killed driver never heard.
        tune.report(_reportable(already))
        return
    cfg.train.storage_path = ctx.train_storage
    cfg.tracking.mlflow_uri = ctx.mlflow_uri
    cfg.tracking.experiment = ctx.experiment
    cfg.tracking.register_model = ""  # the sweep registers its best trial, trials do not
    # "Best" inside a trial (kept checkpoints, best_model) means what the sweep ranks by.
    cfg.train.checkpoint_metric, cfg.train.checkpoint_mode = ctx.metric, ctx.mode
    built = build_trainer(
        cfg,
        name=cfg.train.name,
        train_callbacks=[TuneReportCallback()],
        mlflow_parent_run_id=ctx.parent_run_id,
        mlflow_tags={tracking.TRIAL_ID_TAG: trial_id, tracking.SWEEP_TAG: ctx.sweep_name},
    )
    tracking.name_run(built.mlflow_uri, built.mlflow_run_id, ctx.space.trial_label(trial_id, config))
    result = built.trainer.fit()
    if already is not None:
        # A driver killed after the final epoch's report: the resumed Train run has no epoch left
        # to report (it only logs the final models), so Tune would end the trial with the older
        # result it saved. Say it again.
        tune.report(_reportable(result.metrics or already))


def train_run_name(sweep: str, trial_id: str) -> str:
    """The Train run (under the sweep's train storage) of a trial: the same on every restart."""
    return f"{sweep}-{trial_id}"


def _reportable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "checkpoint_path"}


def _trial_run_closed(ctx: TrialContext, trial_id: str) -> bool:
    """Whether the trial's MLflow child run is FINISHED (rank 0 closes it after logging the models)."""
    try:
        runs = tracking.child_runs(ctx.mlflow_uri, ctx.parent_run_id) if ctx.parent_run_id else []
    except Exception:  # cannot tell: train again (resuming), which logs the models if need be
        return False
    mine = [r for r in runs if r.data.tags.get(tracking.TRIAL_ID_TAG) == trial_id]
    return bool(mine) and all(r.info.status == "FINISHED" for r in mine)


def _finished_train_run(path: str, epochs: int) -> dict | None:
    """The last reported metrics of the Train run at `path` if it already trained every epoch."""
    from ray.train import Result

    try:
        metrics = Result.from_path(*ray_storage(path)).metrics or {}
    except Exception:  # no such run yet (a new trial): the usual case
        return None
    return metrics if int(metrics.get("epoch", 0) or 0) >= epochs else None


# ----------------------------------------------------------------------------------------------
# Plans: new and resumed
# ----------------------------------------------------------------------------------------------
def default_optuna_storage(mlflow_uri: str, storage_path: str) -> str:
    """A sibling optuna.db of MLflow's SQLite file (a separate file: both use an alembic_version
    table), else optuna.db in the local storage folder, else ./optuna.db."""
    if mlflow_uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(mlflow_uri[len('sqlite:///') :]).parent / 'optuna.db'}"
    folder = Path(storage_path) if "://" not in storage_path else Path.cwd()
    return f"sqlite:///{folder.resolve() / 'optuna.db'}"


def new_plan(
    space: SearchSpace,
    settings: SweepSettings,
    *,
    name: str = "",
    storage_path: str = "",
    cli_fixed: dict[str, Any] | None = None,
    mlflow_uri: str = "",
    optuna_storage: str | None = None,
) -> SweepPlan:
    storage_path = storage_path or DEFAULT_STORAGE
    if "://" not in storage_path:
        storage_path = str(Path(storage_path).resolve())
    name = name or f"search-{Path(space.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if exists_at(f"{storage_path}/{name}/{STATE_FILE}"):
        raise SweepError(
            f"sweep {name!r} already exists in {storage_path}: resume it with --resume {name}, or pick --name"
        )
    uri = tracking.resolve_tracking_uri(mlflow_uri)
    base = space.with_fixed(cli_fixed or {}).base()
    return SweepPlan(
        name=name,
        storage_path=storage_path,
        space_source=space.source,
        space_text=space.text,
        cli_fixed=dict(cli_fixed or {}),
        settings=dataclasses.asdict(settings),
        mlflow_uri=uri,
        experiment=base.tracking.experiment,
        optuna_storage=default_optuna_storage(uri, storage_path) if optuna_storage is None else optuna_storage,
    )


def load_plan(name: str, storage_path: str = "") -> SweepPlan:
    storage_path = storage_path or DEFAULT_STORAGE
    if "://" not in storage_path:
        storage_path = str(Path(storage_path).resolve())
    path = f"{storage_path}/{name}/{STATE_FILE}"
    if not exists_at(path):
        raise SweepError(
            f"no sweep {name!r} in {storage_path} ({path} missing); pass --storage-path if it lives elsewhere"
        )
    return SweepPlan(**json.loads(read_text_at(path)))


def save_plan(plan: SweepPlan) -> None:
    write_text_at(f"{plan.experiment_path}/{STATE_FILE}", json.dumps(dataclasses.asdict(plan), indent=2))


def _fs(uri: str):
    """(pyarrow filesystem, path) for a local path or gs://bucket/prefix: the same filesystem Ray
    Train writes checkpoints through, so STORAGE_EMULATOR_HOST (anonymous, http) is honoured."""
    from gsenet.storage import open_storage_filesystem

    return open_storage_filesystem(uri)


def ray_storage(uri: str):
    """(storage_path, storage_filesystem) for Tune's RunConfig / Tuner.restore / can_restore.

    Local folders go as they are (Ray's own local filesystem); gs://bucket/prefix becomes
    ("bucket/prefix", GcsFileSystem): left to itself, Ray resolves gs:// with pyarrow's default
    GCS filesystem, which ignores STORAGE_EMULATOR_HOST and would look for real credentials."""
    if "://" not in uri:
        return uri, None
    return _fs(uri)[::-1]


# ----------------------------------------------------------------------------------------------
# Ray
# ----------------------------------------------------------------------------------------------
def init_ray(address: str = "", num_cpus: int | None = None) -> None:
    """Connect to a cluster (`address`, e.g. "auto") or start a local one with TRAIN_DRIVER."""
    import ray

    from gsenet.runtime import init_ray as start_or_join_ray

    start_or_join_ray(address, num_cpus)
    if ray.cluster_resources().get(DRIVER_RESOURCE, 0) <= 0:
        raise SweepError(
            f"the Ray cluster has no {DRIVER_RESOURCE} resource: start the head (non-preemptible) node with "
            f"`ray start --head --resources='{{\"{DRIVER_RESOURCE}\": 100}}'` so trial drivers have a safe home"
        )


def make_scheduler(settings: SweepSettings, max_epochs: int):
    """The trial scheduler of a sweep (also driven directly by benchmarks/search_efficiency.py).

    `asha` with `brackets` > 1 is asynchronous HyperBand: each trial joins one of `brackets` ASHA
    brackets whose first rung is grace_period x reduction_factor^k (Ray picks the bracket with
    NumPy's global RNG)."""
    from ray.tune.schedulers import FIFOScheduler

    from search.scheduler import ResumableASHA

    if settings.scheduler != "asha":
        return FIFOScheduler()
    return ResumableASHA(  # ASHA whose rungs come back on --resume (search/scheduler.py)
        time_attr="epoch",  # survives resumes; training_iteration restarts at 1
        metric=settings.metric,
        mode=settings.resolved_mode(),
        max_t=max_epochs,
        grace_period=min(settings.grace_period, max_epochs),
        reduction_factor=settings.reduction_factor,
        brackets=settings.brackets,
        # A trial that reaches max_t must finish on its own: stopping it there kills rank 0 while
        # it logs best_model, leaving nothing (or a half-uploaded model) for registration.
        stop_last_trials=False,
    )


def build_tuner(
    plan: SweepPlan,
    trial_fn: Callable | None = None,
    callbacks: list | None = None,
    stop: Any = None,
    reuse_actors: bool = False,
):
    """A fresh `Tuner` for a new sweep (see `restore_tuner` for a resumed one). `stop` and
    `reuse_actors` are for benchmarks with the surrogate trainable."""
    from ray import tune

    from search.searcher import make_searcher

    space, settings, max_epochs = plan.space(), plan.sweep_settings(), plan.max_epochs()
    searcher = make_searcher(space, settings, max_epochs, plan.optuna_storage, study_name=plan.name)
    scheduler = make_scheduler(settings, max_epochs)
    storage_path, storage_filesystem = ray_storage(plan.storage_path)
    return tune.Tuner(
        trainable(plan, trial_fn),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=settings.num_samples,
            max_concurrent_trials=settings.max_concurrent,
            time_budget_s=settings.time_budget_h * 3600 or None,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            # Train restarts worker groups itself (train.max_failures); Tune re-runs a trial driver
            # that failed for a reason that may go away (once_per_trial fails the others at once).
            failure_config=tune.FailureConfig(max_failures=TRIAL_DRIVER_RETRIES),
            callbacks=callbacks or [],
            stop=stop,
            verbose=0,
        ),
    )


def trainable(plan: SweepPlan, trial_fn: Callable | None = None, finished: dict | None = None):
    from ray import tune

    settings = plan.sweep_settings()
    ctx = TrialContext(
        space=plan.space(),
        sweep_name=plan.name,
        train_storage=plan.train_storage,
        mlflow_uri=plan.mlflow_uri,
        experiment=plan.experiment,
        parent_run_id=plan.parent_run_id,
        max_epochs=plan.max_epochs(),
        metric=settings.metric,
        mode=settings.resolved_mode(),
        seed=settings.seed,
        finished=finished or {},
    )
    fn = once_per_trial(trial_fn or run_trial)
    return tune.with_resources(tune.with_parameters(fn, ctx=ctx), TRIAL_DRIVER_RESOURCES)


def restore_tuner(plan: SweepPlan, trial_fn: Callable | None = None, finished: dict | None = None):
    """Tuner.restore: finished trials stay finished, unfinished ones continue (Train resumes them
    from their checkpoints), the searcher keeps its history and the total stays num_samples.
    The callbacks come back from the pickled tuner (they are plain, picklable objects)."""
    from ray import tune

    path, filesystem = ray_storage(plan.experiment_path)
    if not tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        raise SweepError(f"{plan.experiment_path} has no Tune experiment state to resume (did the sweep start?)")
    return tune.Tuner.restore(
        path,
        trainable(plan, trial_fn, finished),
        resume_unfinished=True,
        resume_errored=False,
        storage_filesystem=filesystem,
    )


def sweep_params(plan: SweepPlan) -> dict[str, Any]:
    """What the parent run records about the sweep (disjoint groups: no param hides another)."""
    from gsenet.metrics import disjoint_union

    space = plan.space()
    return disjoint_union(
        {f"sweep.{k}": v for k, v in plan.settings.items()},
        {f"space.{k}": v for k, v in describe(space).items()},
        {f"fixed.{k}": v for k, v in space.fixed.items()},
        {
            "sweep.name": plan.name,
            "sweep.max_epochs": plan.max_epochs(),
            "sweep.storage": plan.experiment_path,
            "sweep.optuna_storage": plan.optuna_storage,
            "sweep.space_file": plan.space_source,
        },
    )


# ----------------------------------------------------------------------------------------------
# Running a sweep end to end
# ----------------------------------------------------------------------------------------------
def run_sweep(
    plan: SweepPlan,
    *,
    resume: bool = False,
    trial_fn: Callable | None = None,
    address: str = "",
    num_cpus: int | None = None,
    interval_s: float = 20.0,
):
    """Start (or resume) the sweep, wait for it, then report. Returns a `search.report.SweepReport`."""
    driver = claim_sweep(plan, resume, address, num_cpus)
    try:
        return drive_sweep(plan, resume, trial_fn, address, num_cpus, interval_s)
    finally:
        driver.ended = True
        with contextlib.suppress(Exception):  # never hide the sweep's own error behind this note
            write_text_at(f"{plan.experiment_path}/{DRIVER_FILE}", json.dumps(dataclasses.asdict(driver)))


def claim_sweep(plan: SweepPlan, resume: bool, address: str, num_cpus: int | None):
    """Start Ray and record this process as the sweep's driver (search/resume.py); on resume, first
    refuse a live driver and stop what a killed one's local Ray left running."""
    from search.resume import DriverRecord, local_ray_session, take_over, this_driver

    path = f"{plan.experiment_path}/{DRIVER_FILE}"
    if resume and exists_at(path):
        take_over(DriverRecord.from_json(read_text_at(path)), plan.name)
    ray = sys.modules.get("ray")  # imported by init_ray, after it pins Ray to loopback
    ours = not (address or os.environ.get("RAY_ADDRESS") or (ray is not None and ray.is_initialized()))
    init_ray(address, num_cpus)
    driver = this_driver(local_ray_session() if ours else "")  # "": not ours to stop, ever
    write_text_at(path, json.dumps(dataclasses.asdict(driver)))
    return driver


def drive_sweep(
    plan: SweepPlan, resume: bool, trial_fn: Callable | None, address: str, num_cpus: int | None, interval_s: float
):
    """run_sweep's work, once this process is the sweep's recorded driver."""
    from search.progress import SweepMonitor

    init_ray(address, num_cpus)
    settings = plan.sweep_settings()
    if resume:
        if plan.parent_run_id:
            tracking.reopen_run(plan.mlflow_uri, plan.parent_run_id)
        tuner = restore_tuner(plan, trial_fn, finished=reconcile_before_resume(plan))
    else:
        plan.parent_run_id = tracking.start_parent_run(
            plan.mlflow_uri, plan.experiment, plan.name, sweep_params(plan), plan.space_text
        )
        save_plan(plan)
        monitor = SweepMonitor(
            metric=settings.metric,
            mode=settings.resolved_mode(),
            max_epochs=plan.max_epochs(),
            num_samples=settings.num_samples,
            time_budget_s=settings.time_budget_h * 3600,
            mlflow_uri=plan.mlflow_uri,
            parent_run_id=plan.parent_run_id,
            timeline_path=f"{plan.experiment_path}/trial_timeline.json",  # local or gs://
            interval_s=interval_s,
        )
        tuner = build_tuner(plan, trial_fn, [monitor])
    print(
        f"sweep {plan.name}: {plan.experiment_path} (MLflow run {plan.parent_run_id} at {plan.mlflow_uri})", flush=True
    )
    started = time.time()
    try:
        grid = tuner.fit()
    except BaseException:
        # Leave the parent open-able: `--resume` sets it RUNNING again and carries on.
        tracking.finish_run(plan.mlflow_uri, plan.parent_run_id, "KILLED")
        raise
    return finish_sweep(plan, grid, wall_s=time.time() - started)


def reconcile_before_resume(plan: SweepPlan) -> dict[str, dict[str, float]]:
    """Bring Optuna and MLflow in line with Tune's saved state (search/resume.py); returns the
    trials a killed driver already finished, for TrialContext.finished."""
    from ray import tune

    from search.resume import reconcile

    path, filesystem = ray_storage(plan.experiment_path)
    if not tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        return {}  # restore_tuner says why
    found = reconcile(plan, path, filesystem)
    if found.describe():
        print(f"resume: {found.describe()}", flush=True)
    return found.finished


def finish_sweep(plan: SweepPlan, grid: Any, wall_s: float):
    """Results table, plots, best model registered, parent run closed, summary printed."""
    import tempfile

    import optuna

    from search import report as reporting
    from search.resume import fail_leftovers

    settings = plan.sweep_settings()
    metric, mode = settings.metric, settings.resolved_mode()
    if fail_leftovers(plan):  # suggestions no trial took (e.g. the time budget ended first)
        print("resume: Optuna trials left RUNNING by a killed driver were closed as FAIL", flush=True)
    rows = reporting.result_rows(
        grid,
        metric,
        mode,
        plan.max_epochs(),
        lambda trial_id: f"{plan.train_storage}/{train_run_name(plan.name, trial_id)}",
    )
    counts = {s: sum(r["state"] == s for r in rows) for s in ("completed", "pruned", "errored")}
    completed = [r for r in rows if r["state"] == "completed" and isinstance(r[metric], (int, float))]
    result = reporting.SweepReport(plan.name, metric, mode, rows, completed[0] if completed else None, counts=counts)
    local = "://" not in plan.storage_path
    folder = Path(plan.experiment_path if local else tempfile.mkdtemp()) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    reporting.write_csv(rows, folder / "results.csv")
    result.files["results table"] = str(folder / "results.csv")
    if plan.optuna_storage:
        study = optuna.load_study(study_name=plan.name, storage=plan.optuna_storage)
        result.files.update(reporting.write_plots(study, folder / "plots"))
    if plan.parent_run_id:
        tracking.log_artifacts(plan.mlflow_uri, plan.parent_run_id, folder)
        tracking.log_metrics(plan.mlflow_uri, plan.parent_run_id, {**result.summary_metrics(), "wall_s": wall_s})
        reporting.register_best(result, plan.mlflow_uri, plan.parent_run_id, settings.register_model)
    if plan.parent_run_id:
        result.ui_links = trials_view_links(plan, metric, mode)
    summary = reporting.format_summary(result, plan)
    if plan.parent_run_id:  # the parent run's page in the UI shows the summary as its description
        tracking.set_run_note(plan.mlflow_uri, plan.parent_run_id, f"```\n{summary.strip()}\n```")
        tracking.finish_run(plan.mlflow_uri, plan.parent_run_id, "FINISHED")
    print(summary, flush=True)
    return result


def trials_view_links(plan: SweepPlan, metric: str, mode: str) -> list[str]:
    """The MLflow UI links of the summary (a saved view of the trials); none rather than a failed sweep."""
    from gsenet.mlflow_ui import sweep_links

    try:
        params = [p.key for p in plan.space().parameters]
        return sweep_links(plan.mlflow_uri, plan.parent_run_id, plan.name, metric, mode, params)
    except Exception as exc:
        print(f"(could not save the trials' view in MLflow: {exc})")
        return []
