"""`gsenet train --data PATH|gs://... [--config FILE] [--workers N] [--gpus-per-worker G] [key=value ...]`.

Runs through Ray Train: joins the cluster in RAY_ADDRESS when set, else starts Ray locally.
Rerunning the same command (same config, storage and name) resumes from the latest checkpoint.

On a local Ray (no RAY_ADDRESS) a run whose train.cpus_per_worker is not set (flag, override or
YAML) shares every CPU of the machine among its workers: the config default of 1 CPU is for
sweeps, which run trials side by side, and for clusters, which say what a worker gets.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="dataset root: a local folder or gs://bucket/prefix (sets data.path)")
    parser.add_argument("--config", help="experiment YAML; overrides below win over it")
    parser.add_argument("--workers", type=int, help="Ray Train workers / DDP ranks (train.num_workers)")
    parser.add_argument("--gpus-per-worker", type=float, help="GPUs per worker (train.gpus_per_worker; 0 = CPU)")
    parser.add_argument(
        "--cpus-per-worker", type=float, help="CPUs (= torch threads) per worker; default on a local Ray: all CPUs"
    )
    parser.add_argument("--storage", help="results folder or gs://bucket/prefix (train.storage_path)")
    parser.add_argument("--name", help="run name (train.name); default: derived from the config, so reruns resume")
    parser.add_argument("--mlflow-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns.db)")
    parser.add_argument("--experiment", help="MLflow experiment name (tracking.experiment)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 model.dilation_depth=3")


def build_config(args: argparse.Namespace):
    from gsenet.config import ExperimentConfig, apply_overrides, load_yaml

    cfg = load_yaml(args.config) if args.config else ExperimentConfig()
    flags = {
        "data.path": args.data,
        "train.num_workers": args.workers,
        "train.gpus_per_worker": args.gpus_per_worker,
        "train.cpus_per_worker": args.cpus_per_worker,
        "train.storage_path": args.storage,
        "train.name": args.name,
        "tracking.mlflow_uri": args.mlflow_uri,
        "tracking.experiment": args.experiment,
    }
    cfg = apply_overrides(cfg, {k: v for k, v in flags.items() if v is not None})
    return apply_overrides(cfg, args.overrides or [])


def cpus_per_worker_given(args: argparse.Namespace) -> bool:
    """Whether the flag, an override or the YAML file sets train.cpus_per_worker."""
    import yaml

    if args.cpus_per_worker is not None:
        return True
    if any(item.partition("=")[0].strip() == "train.cpus_per_worker" for item in args.overrides or []):
        return True
    values = yaml.safe_load(open(args.config).read()) if args.config else None  # build_config checked it
    return isinstance(values, dict) and "cpus_per_worker" in (values.get("train") or {})


def share_local_cpus(cfg, num_cpus: float):
    """Every CPU of a local Ray split among the run's workers (at least 1 each)."""
    from gsenet.config import apply_overrides

    return apply_overrides(cfg, {"train.cpus_per_worker": max(1, int(num_cpus // cfg.train.num_workers))})


def run(args: argparse.Namespace) -> int:
    import os

    from gsenet.preflight import absolute_local_paths, check_before_training

    # Config, paths and the MLflow server are checked before Ray starts (tens of seconds).
    cfg = absolute_local_paths(build_config(args))
    check_before_training(cfg)

    from gsenet.runtime import init_ray
    from gsenet.train import fit

    local = not os.environ.get("RAY_ADDRESS")
    init_ray()  # $RAY_ADDRESS when set, else a local Ray
    if local and not cpus_per_worker_given(args):
        import ray

        cfg = share_local_cpus(cfg, ray.cluster_resources().get("CPU", 1))
        print(f"gsenet: local Ray, {cfg.train.cpus_per_worker:g} CPU(s) per worker (set --cpus-per-worker to change)")
    result = fit(cfg)
    metrics = result.metrics or {}
    print(
        f"done: epoch {metrics.get('epoch')} step {metrics.get('step')} | val_loss {metrics.get('val_loss', float('nan')):.4f}"
        f" | SI-SDR {metrics.get('val_si_sdr', float('nan')):.2f} dB | PESQ {metrics.get('val_pesq', float('nan')):.2f}"
    )
    metric, mode = cfg.train.checkpoint_metric, cfg.train.resolved_checkpoint_mode()
    best = result.get_best_checkpoint(metric, mode) if result.best_checkpoints else None
    print(f"latest checkpoint: {result.checkpoint.path if result.checkpoint else None}")
    print(f"best checkpoint:   {best.path if best else None} (by {metric}, {mode})")
    for line in mlflow_lines(cfg):
        print(line)
    return 0


def mlflow_lines(cfg) -> list[str]:
    """Where the run's MLflow record is and the command that opens it (found by the run's key tag)."""
    from gsenet import tracking
    from gsenet.mlflow_ui import browser_base, ui_url
    from gsenet.runtime import DEFAULT_STORAGE
    from gsenet.storage import open_storage_filesystem
    from gsenet.train import default_run_name

    uri = tracking.resolve_tracking_uri(cfg.tracking.mlflow_uri)
    name = default_run_name(cfg)
    run_key = f"{cfg.train.storage_path or open_storage_filesystem(DEFAULT_STORAGE)[1]}/{name}"
    run = tracking.find_run_by_key(uri, cfg.tracking.experiment, run_key)
    if run is None:
        return [f"MLflow: no run found for {run_key} at {uri}"]
    experiment_id, run_id = run
    base, serve = browser_base(uri)
    page = ui_url(base, experiment_id, run_id)
    if not serve:
        return [f"MLflow run {run_id}: {page}"]
    return [f"MLflow run {run_id} in {uri}", f"open it: `{serve}`, then {page}"]
