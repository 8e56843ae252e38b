"""The end of a sweep: results table, Optuna plots, the best model registered, and what to read.

Everything here works from what the sweep left behind (Tune's ResultGrid and the Optuna study in
its database), so a resumed sweep reports on all of its trials, not only the ones it ran.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import mlflow_runs
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

    def summary_metrics(self) -> dict[str, float]:
        out = {f"trials_{k}": float(v) for k, v in self.counts.items()}
        out["trial_epochs"] = float(sum(r["epochs"] for r in self.rows))
        if self.best:
            out[f"best_{self.metric}"] = float(self.best[self.metric])
        return out


def result_rows(result_grid: Any, metric: str, mode: str, max_epochs: int) -> list[dict[str, Any]]:
    """One row per trial from Tune's ResultGrid, best final `metric` first (errors last)."""
    rows = []
    for result in result_grid:
        metrics = result.metrics or {}
        epoch = int(metrics.get("epoch", 0) or 0)
        history = result.metrics_dataframe
        row = {
            "trial_id": metrics.get("trial_id") or (result.path or "").rsplit("/", 1)[-1],
            "state": trial_state("ERROR" if result.error else "TERMINATED", epoch, max_epochs),
            "epochs": epoch,
            metric: metrics.get(metric),
            f"best_{metric}": _best_value(history, metric, mode),
            "checkpoint": _best_checkpoint(history, metric, mode),
            **{k: v for k, v in metrics.items() if k.startswith("val_") and k != metric},
            **{f"param.{k}": v for k, v in (result.config or {}).items()},
        }
        rows.append(row)
    sign = 1 if mode == "min" else -1

    def order(row: dict) -> tuple:
        value = row[metric]
        finite = isinstance(value, (int, float)) and math.isfinite(value)
        return ({"completed": 0, "pruned": 1}.get(row["state"], 2), sign * value if finite else math.inf)

    return sorted(rows, key=order)


def _best_value(history: Any, metric: str, mode: str) -> float | None:
    if history is None or metric not in history:
        return None
    values = history[metric].dropna()
    return None if values.empty else float(values.min() if mode == "min" else values.max())


def _best_checkpoint(history: Any, metric: str, mode: str) -> str:
    """The checkpoint of the trial's best epoch (Train reports its path with each epoch)."""
    if history is None or "checkpoint_path" not in history or metric not in history:
        return ""
    rows = history.dropna(subset=["checkpoint_path", metric])
    if rows.empty:
        return ""
    best = rows[metric].idxmin() if mode == "min" else rows[metric].idxmax()
    return str(rows.loc[best, "checkpoint_path"])


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
    """Register the best completed trial's model as `model_name`, alias `best`."""
    if not (model_name and report.best and parent_run_id):
        return
    trial_id = report.best["trial_id"]
    runs = [
        r for r in mlflow_runs.child_runs(uri, parent_run_id) if r.data.tags.get(mlflow_runs.TRIAL_ID_TAG) == trial_id
    ]
    if not runs:
        print(f"(best trial {trial_id} has no MLflow run: not registered)")
        return
    checkpoint = report.best.get("checkpoint") or None
    if checkpoint is None and mlflow_runs.model_artifact_path(uri, runs[0].info.run_id) is None:
        print(f"(best trial {trial_id} logged no model and no checkpoint: nothing to register)")
        return
    try:
        report.model_uri, version = mlflow_runs.register_model(uri, runs[0].info.run_id, model_name, checkpoint)
        report.best["mlflow_run_id"] = runs[0].info.run_id
        report.best["model_version"] = version
    except Exception as exc:
        print(f"(could not register the best model as {model_name!r}: {exc})")


def format_summary(report: SweepReport, plan: Any, top: int = 5) -> str:
    """The top trials, where the best model is, and the commands to look at it all."""
    lines = [f"\nSweep {report.name}: " + ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)]
    lines.append(f"Top trials by {report.metric} ({report.mode}):")
    for rank, row in enumerate(report.rows[:top], 1):
        value = row[report.metric]
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        params = ", ".join(f"{k[6:]}={_fmt(v)}" for k, v in row.items() if k.startswith("param."))
        lines.append(
            f"  {rank}. {row['trial_id']} [{row['state']}, {row['epochs']} ep] {report.metric}={shown}  {params}"
        )
    if report.best:
        lines.append(f"Best checkpoint: {report.best.get('checkpoint') or '(none reported)'}")
        if report.model_uri:
            lines.append(f"Registered model: {report.model_uri} (version {report.best.get('model_version')})")
    else:
        lines.append("No trial completed every epoch: nothing registered.")
    for name, path in report.files.items():
        lines.append(f"{name}: {path}")
    lines.append("Look at it:")
    if plan.mlflow_uri.startswith(("http://", "https://")):
        lines.append(f"  MLflow UI:        open {plan.mlflow_uri} (experiment {plan.experiment!r}, run {plan.name!r})")
    else:
        lines.append(
            f"  MLflow UI:        mlflow ui --backend-store-uri {plan.mlflow_uri} --host 127.0.0.1 --port 5000"
        )
    if plan.optuna_storage:
        lines.append(f"  optuna-dashboard: optuna-dashboard {plan.optuna_storage}   (study {plan.name!r})")
    lines.append(f"  resume/extend:    gsenet search --resume {plan.name} --storage-path {plan.storage_path}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
