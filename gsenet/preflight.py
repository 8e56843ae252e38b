"""Checks that need no cluster, run on the driver before Ray starts (`gsenet train`, `gsenet doctor`).

Starting Ray takes tens of seconds on a busy machine; a config typo, a missing data folder or an
unreachable MLflow server must not wait for it. Nothing here imports torch, Ray or MLflow, so a
failing command returns in about a second.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from gsenet.config import ExperimentConfig, apply_overrides
from gsenet.errors import TrackingError


def absolute_local_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """data.path, data.cache_dir and train.storage_path made absolute on the driver.

    Ray workers do not run in the driver's working folder, so `--data data` would name a folder
    that does not exist there. gs:// paths are left alone.
    """
    changes = {}
    for key, value in (
        ("data.path", cfg.data.path),
        ("data.cache_dir", cfg.data.cache_dir),
        ("train.storage_path", cfg.train.storage_path),
    ):
        if value and "://" not in value:
            changes[key] = str(Path(value).expanduser().resolve())
    return apply_overrides(cfg, changes) if changes else cfg


def tracking_uri(cfg: ExperimentConfig) -> str:
    """The URI the run will log to, as the user gave it (tracking.resolve_tracking_uri makes it absolute)."""
    return cfg.tracking.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI", "")


def tracking_server_problem(uri: str, timeout: float = 3.0) -> str:
    """Why an http(s) MLflow server does not answer its /health endpoint ("" when it does or is local)."""
    if not uri.startswith(("http://", "https://")):
        return ""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            return "" if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def check_tracking(uri: str, timeout: float = 3.0) -> None:
    problem = tracking_server_problem(uri, timeout)
    if problem:
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable ({problem}); start it (`mlflow server ...`), "
            "fix --mlflow-uri / MLFLOW_TRACKING_URI, or unset it to log to ./mlruns.db"
        )


def check_before_training(cfg: ExperimentConfig) -> None:
    """Raise the GSENetError `gsenet train` would otherwise hit after starting Ray.

    The dataset is resolved (gs:// -> local cache, honouring data.gcs_timeout_s) and linted here;
    the linter's cache makes the driver's second check, inside Ray, cheap. Warnings are left to that
    second check so they are printed once.
    """
    from gsenet.checks import check_dataset
    from gsenet.storage import resolve_data_root

    check_tracking(tracking_uri(cfg))
    root = resolve_data_root(cfg.data.path, cfg.data.cache_dir, timeout=cfg.data.gcs_timeout_s)
    report = check_dataset(root, cfg.data, cfg.model.sample_rate)
    report.raise_if_errors(skip_bad=cfg.data.skip_bad_recordings)
