"""The end of a sweep: results table, Optuna plots, the best model registered, and what to read.

Everything here works from what the sweep left behind (Tune's ResultGrid and the Optuna study in
its database), so a resumed sweep reports on all of its trials, not only the ones it ran.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsenet import tracking
from gsenet.metrics import disjoint_union
from gsenet.mlflow_ui import ui_url
from search.progress import trial_state

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    name: str
    metric: str
    mode: str
    rows: list[dict[str, Any]]  # one per trial, best first
    best: dict[str, Any] | None = None  # best completed trial's row
    model_uri: str = ""  # models:/NAME@best when registered
    files: dict[str, str] = field(default_factory=dict)  # what was written (csv, plots)
    counts: dict[str, int] = field(default_factory=dict)
    ui_links: list[str] = field(default_factory=list)  # summary lines from gsenet.mlflow_ui.sweep_links

    def summary_metrics(self) -> dict[str, float]:
        out = {f"trials_{k}": float(v) for k, v in self.counts.items()}
        out["trial_epochs"] = float(sum(r["epochs"] for r in self.rows))
        if self.best:
            out[f"best_{self.metric}"] = float(self.best[self.metric])
        return out


def result_rows(
    result_grid: Any, metric: str, mode: str, max_epochs: int, train_run_folder: Callable[[str], str] | None = None
) -> list[dict[str, Any]]:
    """One row per trial from Tune's ResultGrid, best first (errors last).

    A trial is ranked by its best epoch's `metric`, and every `val_*` figure in its row is that
    epoch's: the best epoch is what the trial's `best_model` and kept checkpoints hold, so the
    row describes exactly the model a registration would ship. `final_<metric>` is the last epoch's.
    A best epoch whose report named no checkpoint (a trial that reported again after a driver kill)
    takes it from the trial's Train run, `train_run_folder(trial id)`.
    """
    rows = []
    for result in result_grid:
        metrics = result.metrics or {}
        epoch = int(metrics.get("epoch", 0) or 0)
        best = _best_epoch(result.metrics_dataframe, metric, mode) or metrics
        trial_id = metrics.get("trial_id") or (result.path or "").rsplit("/", 1)[-1]
        checkpoint = valid_checkpoint(best.get("checkpoint_path"), result.filesystem)
        if not checkpoint and train_run_folder is not None:
            best_epoch = int(best.get("epoch", 0) or 0)
            checkpoint = train_run_checkpoint(train_run_folder(trial_id), best_epoch, metric, mode)
        row = disjoint_union(
            {
                "trial_id": trial_id,
                "state": trial_state("ERROR" if result.error else "TERMINATED", epoch, max_epochs),
                "epochs": epoch,
                "best_epoch": int(best.get("epoch", 0) or 0),
                metric: best.get(metric),
                f"final_{metric}": metrics.get(metric),
                "checkpoint": checkpoint,
            },
            {k: v for k, v in best.items() if k.startswith("val_") and k != metric},
            {f"param.{k}": v for k, v in (result.config or {}).items()},
        )
        rows.append(row)
    sign = 1 if mode == "min" else -1

    def order(row: dict) -> tuple:
        value = row[metric]
        finite = isinstance(value, (int, float)) and math.isfinite(value)
        return ({"completed": 0, "pruned": 1}.get(row["state"], 2), sign * value if finite else math.inf)

    return sorted(rows, key=order)


def _best_epoch(history: Any, metric: str, mode: str) -> dict[str, Any] | None:
    """The reported metrics of the trial's best epoch (the first of equals), None without history."""
    if history is None or metric not in history:
        return None
    scored = history.dropna(subset=[metric])
    if scored.empty:
        return None
    best = scored[metric].idxmin() if mode == "min" else scored[metric].idxmax()
    return {k: _plain(v) for k, v in scored.loc[best].items()}


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (for CSV, MLflow and formatting)."""
    return value.item() if hasattr(value, "item") else value


def train_run_checkpoint(run_folder: str, epoch: int, metric: str, mode: str) -> str:
    """The checkpoint of `epoch` that Ray Train registered for the run at `run_folder` (local or
    gs://), else its best by `metric`, if it still exists and is complete; "" if none. Read from
    the run's checkpoint_manager_snapshot.json, which lists each kept checkpoint with its metrics."""
    import json

    from gsenet.storage import exists_at, read_text_at

    snapshot = f"{run_folder}/checkpoint_manager_snapshot.json"
    try:
        kept = json.loads(read_text_at(snapshot)).get("checkpoint_results", []) if exists_at(snapshot) else []
    except (OSError, ValueError):
        return ""  # unreadable: the row says none kept, as before
    sign = -1 if mode == "max" else 1

    def preference(entry: dict) -> tuple:
        metrics = entry.get("metrics") or {}
        value = metrics.get(metric)
        scored = isinstance(value, (int, float)) and math.isfinite(value)
        return (metrics.get("epoch") != epoch, sign * value if scored else math.inf)

    for entry in sorted(kept, key=preference):
        found = valid_checkpoint(f"{run_folder}/{entry.get('checkpoint_dir_name', '')}")
        if found:
            return found
    return ""


def valid_checkpoint(path: Any, filesystem: Any = None) -> str:
    """`path` (as a gs:// URI on a GCS filesystem) if it is a checkpoint that still exists and is
    complete, else "".

    Ray deletes checkpoints beyond `train.keep_checkpoints`; a report must never name one of those,
    nor a cut-short or garbled one. Ray gives paths relative to its storage filesystem, so
    "bucket/prefix/checkpoint_..." on GCS is a gs:// URI, never a local path.
    """
    from gsenet.checkpoint import problem
    from gsenet.model_files import stored_checkpoint_problem, stored_uri

    if not isinstance(path, str) or not path:
        return ""
    if filesystem is not None and filesystem.type_name not in ("local", "gcs"):
        return path  # storage gsenet never writes to (checked when it is used)
    uri = stored_uri(path, filesystem)
    if uri.startswith("gs://"):
        return uri if stored_checkpoint_problem(uri) is None else ""
    return uri if problem(uri) is None else ""


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["rank", *keys])
        writer.writeheader()
        for rank, row in enumerate(rows, 1):
            writer.writerow({"rank": rank, **row})


def write_plots(study: Any, folder: Path) -> dict[str, str]:
    """Optuna's history, importances and parallel coordinates as HTML (plotly) and PNG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl
    from optuna.exceptions import ExperimentalWarning

    warnings.filterwarnings("ignore", category=ExperimentalWarning)  # the matplotlib plots are "experimental"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in ("optimization_history", "param_importances", "parallel_coordinate"):
        try:
            getattr(vis, f"plot_{name}")(study).write_html(folder / f"{name}.html", include_plotlyjs="cdn")
            axes = getattr(vis_mpl, f"plot_{name}")(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.set_size_inches(10, 6)
            figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            plt.close(figure)
            written[name] = str(folder / f"{name}.png")
        except Exception as exc:  # e.g. importances need 2+ complete trials
            logger.info("skipping the %s plot: %s", name, exc)
            print(f"(no {name.replace('_', ' ')} plot: {exc})")
    return written


def register_best(report: SweepReport, uri: str, parent_run_id: str, model_name: str) -> None:
    """Register the best completed trial's best_model as `model_name`, alias `best`.

    Refuses (with a message; the sweep still finishes) rather than register something that does
    not load. A trial that could not log its model gets one made from its best checkpoint."""
    if not (model_name and report.best and parent_run_id):
        return
    trial_id = report.best["trial_id"]
    runs = [r for r in tracking.child_runs(uri, parent_run_id) if r.data.tags.get(tracking.TRIAL_ID_TAG) == trial_id]
    if not runs:
        print(f"(best trial {trial_id} has no MLflow run: not registered)")
        return
    run_id = runs[0].info.run_id
    report.best["mlflow_run_id"] = run_id
    try:
        if tracking.logged_model(uri, run_id) is None:
            checkpoint = report.best.get("checkpoint")
            if checkpoint and checkpoint.startswith("gs://"):  # a gs:// sweep's: fetched (checksums verified on load)
                from gsenet.model_files import download_stored_folder

                checkpoint = str(download_stored_folder(checkpoint))
            if not checkpoint or "://" in checkpoint:
                raise tracking.TrackingError(f"trial {trial_id} logged no model and has no checkpoint left")
            tracking.log_checkpoint_as_model(uri, run_id, checkpoint)
        report.model_uri, report.best["model_version"] = tracking.register_model(uri, run_id, model_name)
    except Exception as exc:
        print(f"(could not register the best model as {model_name!r}: {exc})")


def format_summary(report: SweepReport, plan: Any, top: int = 5) -> str:
    """The top trials, the best one's true quality, where its model is, and commands that work
    as printed (absolute paths to this environment's executables: no venv activation needed)."""
    lines = [f"\nSweep {report.name}: " + ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)]
    lines.append(f"Top trials by {report.metric} ({report.mode}, at each trial's best epoch):")
    for rank, row in enumerate(report.rows[:top], 1):
        params = ", ".join(f"{k[6:]}={_fmt(v)}" for k, v in row.items() if k.startswith("param."))
        lines.append(
            f"  {rank}. {row['trial_id']} [{row['state']}, {row['epochs']} ep, best ep {row['best_epoch']}] "
            f"{report.metric}={_metric(row[report.metric])}  {params}"
        )
    data_path, val_max = _validation_split(plan)
    if report.best:
        best = report.best
        lines.append(f"Best trial: {best['trial_id']} (epoch {best['best_epoch']}): {_quality(best)}")
        lines.append(f"Best checkpoint: {best.get('checkpoint') or '(none kept)'}")
        if report.model_uri:
            lines.append(f"Registered model: {report.model_uri} (version {best.get('model_version')})")
    else:
        lines.append("No trial completed every epoch: nothing registered.")
    for name, path in report.files.items():
        lines.append(f"{name}: {path}")
    gsenet = _executable("gsenet")
    lines.append("Look at it:")
    if report.ui_links:
        lines += report.ui_links
    elif plan.mlflow_uri.startswith(("http://", "https://")):
        lines.append(
            f"  MLflow UI:        open {ui_url(plan.mlflow_uri)} (experiment {plan.experiment!r}, run {plan.name!r})"
        )
    else:
        lines.append(f"  MLflow UI:        {gsenet} ui --mlflow-uri {plan.mlflow_uri}")
    if report.model_uri:
        subset = f" --max-recordings {val_max}" if val_max else ""
        lines.append(
            f"  re-score it:      {gsenet} evaluate {report.model_uri} {data_path} --split val{subset} "
            f"--mlflow-uri {plan.mlflow_uri}"
        )
    if plan.optuna_storage:
        lines.append(
            f"  optuna-dashboard: {_executable('optuna-dashboard')} {plan.optuna_storage}   (study {plan.name!r})"
        )
    lines.append(f"  resume/extend:    {gsenet} search --resume {plan.name} --storage-path {plan.storage_path}")
    return "\n".join(lines)


def _quality(row: dict[str, Any]) -> str:
    """The true SI-SDR of a row and its gain over the beamformer (what every trial is judged by)."""
    parts = []
    if isinstance(row.get("val_si_sdr"), (int, float)):
        parts.append(f"SI-SDR {row['val_si_sdr']:.2f} dB")
    if isinstance(row.get("val_si_sdr_improvement"), (int, float)):
        beam = row.get("val_si_sdr_beam")
        beam_text = f" (beamformer {beam:.2f} dB)" if isinstance(beam, (int, float)) else ""
        parts.append(f"{row['val_si_sdr_improvement']:+.2f} dB over the beamformer{beam_text}")
    for key, title in (("val_pesq", "PESQ"), ("val_stoi", "STOI")):
        if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
            parts.append(f"{title} {row[key]:.3f}")
    return ", ".join(parts) or "(no validation metrics reported)"


def _validation_split(plan: Any) -> tuple[str, int]:
    """The data path and val_max_recordings the trials validated on (to re-score the same split)."""
    try:
        base = plan.space().base()
    except Exception:  # a report must not fail on a plan it cannot re-read
        return "DATA", 0
    return base.data.path or "DATA", base.data.val_max_recordings


def _executable(name: str) -> str:
    """The absolute path of `name` beside this Python (the venv's bin), else the bare name."""
    import sys

    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.is_file() else name


def _metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))
