"""`gsenet search --data PATH|gs://... --space FILE [...]`: a Ray Tune + Optuna + ASHA sweep.

    gsenet search --smoke-test                                  # whole path, tiny, simulated data
    gsenet search --data gs://bucket/data --space default --num-samples 64 --max-concurrent 8 \\
        --workers-per-trial 1 --gpus-per-worker 1 --time-budget 12 --address auto
    gsenet search --resume search-default-20250101-120000       # after the driver died
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to search")
    what.add_argument("--data", default="", help="dataset root: local folder or gs://bucket/prefix")
    what.add_argument("--space", default="", help="space YAML file, or a name in search/spaces/ (default: default)")
    what.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="fixed config override"
    )
    what.add_argument("--smoke-test", action="store_true", help="tiny model, 3 trials x 2 epochs, simulated data")
    how = parser.add_argument_group("how (defaults from the space file's sweep: section)")
    how.add_argument("--num-samples", type=int, help="trials in total")
    how.add_argument("--max-concurrent", type=int, help="trials at once")
    how.add_argument("--workers-per-trial", type=int, help="Ray Train workers per trial (train.num_workers)")
    how.add_argument("--gpus-per-worker", type=float, help="GPUs per Train worker (train.gpus_per_worker)")
    how.add_argument("--cpus-per-worker", type=float, help="CPUs per Train worker (train.cpus_per_worker)")
    how.add_argument("--time-budget", type=float, dest="time_budget_h", help="hours; running trials stop after it")
    how.add_argument("--max-epochs", type=int, help="epochs of a trial that is never stopped (train.epochs)")
    how.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be stopped")
    how.add_argument("--reduction-factor", type=int, help="ASHA: keep 1/this at each rung")
    how.add_argument("--brackets", type=int, help="ASHA brackets (asynchronous HyperBand; 1 = plain ASHA)")
    how.add_argument("--metric", help="reported metric to optimise (default: the space file's, else val_si_sdr)")
    how.add_argument("--mode", choices=("min", "max"), help="default: the metric's natural direction")
    how.add_argument("--searcher", choices=("tpe", "random"), help="Optuna sampler (default tpe)")
    how.add_argument("--scheduler", choices=("asha", "fifo"), help="early stopping (default asha)")
    how.add_argument("--seed", type=int, help="sampler seed")
    where = parser.add_argument_group("where")
    where.add_argument("--name", default="", help="sweep name (default search-SPACE-TIMESTAMP)")
    where.add_argument("--storage-path", default="", help="Tune/Train results (default ./gsenet_runs; gs://... ok)")
    where.add_argument("--mlflow-uri", default="", help="tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns.db)")
    where.add_argument("--optuna-storage", default=None, help="Optuna study DB URL (default optuna.db beside MLflow's)")
    where.add_argument("--register-model", help="Model Registry name for the best model ('' = do not register)")
    where.add_argument(
        "--address", default=os.environ.get("RAY_ADDRESS", ""), help="Ray cluster ('auto' on a cluster head)"
    )
    where.add_argument("--resume", metavar="NAME", default="", help="continue the sweep NAME whose driver died")
    where.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress tables")


def run(args: argparse.Namespace) -> int:
    from gsenet.preflight import check_tracking
    from search.space import load_space

    if args.resume:
        from search.sweep import load_plan, run_sweep

        plan = load_plan(args.resume, args.storage_path)
        print(f"resuming sweep {plan.name} from {plan.experiment_path}")
        run_sweep(plan, resume=True, address=args.address, interval_s=args.progress_every)
        return 0
    space = load_space(args.space or ("smoke" if args.smoke_test else "default"))
    cli_fixed = fixed_overrides(args)
    settings = space.settings(
        num_samples=args.num_samples,
        max_concurrent=args.max_concurrent,
        time_budget_h=args.time_budget_h,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        brackets=args.brackets,
        metric=args.metric,
        mode=args.mode,
        searcher=args.searcher,
        scheduler=args.scheduler,
        seed=args.seed,
        register_model=args.register_model,
    )
    if cli_fixed.get("data.path"):  # before the heavy imports (torch, MLflow) and Ray: errors in seconds
        check_data(space.with_fixed(cli_fixed).base())
        check_tracking(args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI", ""))
    from search.sweep import new_plan, run_sweep

    plan = new_plan(
        space,
        settings,
        name=args.name,
        storage_path=args.storage_path,
        cli_fixed=cli_fixed,
        mlflow_uri=args.mlflow_uri,
        optuna_storage=args.optuna_storage,
    )
    for warning in space.warnings(settings):
        print(f"warning: {warning}")
    if not cli_fixed.get("data.path"):
        plan.cli_fixed["data.path"] = smoke_data(plan.storage_path) if args.smoke_test else _no_data()
        check_data(plan.space().base())
    check_tracking(plan.mlflow_uri)  # before Ray starts: an unreachable server fails in seconds
    run_sweep(plan, address=args.address, interval_s=args.progress_every)
    return 0


def fixed_overrides(args: argparse.Namespace) -> dict:
    """CLI flags that set config fields for every trial (validated together with the space)."""
    from pathlib import Path

    from gsenet.config import ConfigError, parse_value

    fixed = {}
    for item in args.overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} must look like section.key=value, e.g. --set data.batch_size=4")
        fixed[key.strip()] = parse_value(text)
    flags = {
        "train.num_workers": args.workers_per_trial,
        "train.gpus_per_worker": args.gpus_per_worker,
        "train.cpus_per_worker": args.cpus_per_worker,
        "train.epochs": args.max_epochs,
    }
    fixed.update({k: v for k, v in flags.items() if v is not None})
    if args.data:
        fixed["data.path"] = args.data if "://" in args.data else str(Path(args.data).resolve())
    return fixed


def _no_data() -> str:
    from gsenet.errors import DataError

    raise DataError("--data is required (a folder or gs://bucket/prefix with train/ val/ test/); or use --smoke-test")


def smoke_data(storage_path: str) -> str:
    """A small simulated dataset, made once and reused by later smoke tests."""
    from pathlib import Path

    from gsenet.runtime import DEFAULT_STORAGE
    from gsenet.simulate import simulate_dataset

    root = Path(storage_path if "://" not in storage_path else DEFAULT_STORAGE) / "smoke_data"
    print(f"smoke test: simulating a small dataset in {root}")
    simulate_dataset(root, recordings=10, seed=0, duration_s=2.0, progress=False)
    return str(root.resolve())


def check_data(cfg) -> None:
    """Check a local dataset once, before Ray starts (gs:// data is checked by each trial)."""
    from pathlib import Path

    from gsenet.checks import check_dataset

    if "://" in cfg.data.path:
        return
    report = check_dataset(Path(cfg.data.path), cfg.data, cfg.model.sample_rate)
    if not cfg.data.skip_bad_recordings:
        report.raise_if_errors()
