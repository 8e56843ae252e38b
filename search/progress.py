"""What the sweep driver does while trials run: a live progress table, each trial's MLflow child
closed with its final state, and a timeline of trial events (for the overhead benchmark).

`SweepMonitor` is a Tune callback; it is pickled with the tuner and comes back on `--resume`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from gsenet import tracking

logger = logging.getLogger(__name__)
STATES = ("pending", "running", "completed", "pruned", "errored")


def trial_state(status: str, last_epoch: int, max_epochs: int) -> str:
    """A person's word for a Tune trial status: a trial that ended early was pruned."""
    if status == "ERROR":
        return "errored"
    if status == "TERMINATED":
        return "completed" if last_epoch >= max_epochs else "pruned"
    return "running" if status == "RUNNING" else "pending"


def better(a: float | None, b: float | None, mode: str) -> bool:
    if a is None or not math.isfinite(a):
        return False
    return b is None or (a < b if mode == "min" else a > b)


class SweepMonitor(Callback):
    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        max_epochs: int,
        num_samples: int,
        time_budget_s: float = 0.0,
        mlflow_uri: str = "",
        parent_run_id: str = "",
        timeline_path: str = "",
        interval_s: float = 20.0,
        stream: Any = None,
    ):
        self.metric, self.mode, self.max_epochs, self.num_samples = metric, mode, max_epochs, num_samples
        self.time_budget_s, self.interval_s = time_budget_s, interval_s
        self.mlflow_uri, self.parent_run_id, self.timeline_path = mlflow_uri, parent_run_id, timeline_path
        self.stream = stream
        self._reset()

    def _reset(self) -> None:
        self.started = time.time()
        self.last_print = self.last_save = 0.0
        self.best: tuple[float, str, int] | None = None  # (value, trial id, epoch)
        self.events: list[dict[str, Any]] = []

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["stream"] = None  # sys.stdout does not pickle
        return state

    def setup(self, **info: Any) -> None:
        self._reset()  # also after a resume: the budget and the table restart with this driver
        if self.timeline_path:  # a local path or gs://
            from gsenet.storage import exists_at, read_text_at

            if exists_at(self.timeline_path):
                self.events = json.loads(read_text_at(self.timeline_path))

    # --- events -------------------------------------------------------------------------------
    def _event(self, kind: str, trial: Any, **extra: Any) -> None:
        self.events.append({"t": time.time(), "event": kind, "trial": trial.trial_id, **extra})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._event("start", trial)
        self._save_timeline()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        epoch = int(result.get("epoch", 0) or 0)
        value = result.get(self.metric)
        extras = {k: result[k] for k in ("step", "audio_seconds_per_second") if k in result}  # for benchmarks
        self._event("result", trial, epoch=epoch, value=value, **extras)
        if isinstance(value, (int, float)) and better(float(value), self.best[0] if self.best else None, self.mode):
            self.best = (float(value), trial.trial_id, epoch)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "ERROR")

    def _finish(self, trial: Any, status: str) -> None:
        last = trial.last_result or {}
        state = trial_state(status, int(last.get("epoch", 0) or 0), self.max_epochs)
        self._event("end", trial, state=state)
        if self.parent_run_id:
            metrics = {
                k: v for k, v in last.items() if k.startswith(("val_", "train_")) and isinstance(v, (int, float))
            }
            try:
                tracking.finish_trial_run(
                    self.mlflow_uri, self.parent_run_id, trial.trial_id, state, trial.config, metrics
                )
            except Exception as exc:  # tracking must never take the sweep down
                logger.warning("could not close the MLflow run of trial %s: %s", trial.trial_id, exc)
        self._save_timeline()

    def _save_timeline(self) -> None:
        self.last_save = time.time()
        if self.timeline_path and "://" in self.timeline_path:
            from gsenet.storage import write_text_at

            try:  # one object upload: all or nothing, like the rename below
                write_text_at(self.timeline_path, json.dumps(self.events))
            except OSError as exc:  # a storage hiccup must not take the sweep down; the next save retries
                logger.warning("could not save the trial timeline to %s: %s", self.timeline_path, exc)
        elif self.timeline_path:
            # Temp file + rename: a reader (or a driver killed mid-write) never sees half a file.
            path = Path(self.timeline_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(self.events))
            tmp.replace(path)

    # --- the table ----------------------------------------------------------------------------
    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.events and self.events[-1]["t"] > self.last_save and time.time() - self.last_save > 5:
            self._save_timeline()  # so a killed driver leaves a recent timeline behind
        if time.time() - self.last_print >= self.interval_s:
            self.print_table(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.print_table(trials)
        self._save_timeline()

    def print_table(self, trials: list) -> None:
        self.last_print = time.time()
        print(self.format_table(trials), file=self.stream or sys.stdout, flush=True)

    def format_table(self, trials: list) -> str:
        counts = dict.fromkeys(STATES, 0)
        rows = []
        for t in trials:
            last = t.last_result or {}
            epoch = int(last.get("epoch", 0) or 0)
            state = trial_state(t.status, epoch, self.max_epochs)
            counts[state] += 1
            rows.append((t.trial_id, state, epoch, last.get(self.metric)))
        elapsed = time.time() - self.started
        budget = f", {_hms(max(self.time_budget_s - elapsed, 0))} left of budget" if self.time_budget_s else ""
        best = (
            f"best {self.metric} {self.best[0]:.4f} (trial {self.best[1]}, epoch {self.best[2]})"
            if self.best
            else "no result yet"
        )
        head = (
            f"[sweep {_hms(elapsed)}{budget}] {len(trials)}/{self.num_samples} trials: "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            + f" | {best}"
        )
        lines = [head, f"  {'trial':<18}{'state':<11}{'epoch':>7}  {self.metric}"]
        for trial_id, state, epoch, value in self._shown(rows):
            shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
            lines.append(f"  {trial_id:<18}{state:<11}{epoch:>4}/{self.max_epochs:<2}  {shown}")
        return "\n".join(lines)

    def _shown(self, rows: list[tuple], top: int = 5) -> list[tuple]:
        """Running and pending trials, then the best `top` finished ones (long sweeps stay readable)."""
        active = [r for r in rows if r[1] in ("running", "pending")]
        finished = [r for r in rows if r[1] not in ("running", "pending") and isinstance(r[3], (int, float))]
        finished.sort(key=lambda r: r[3] if self.mode == "min" else -r[3])
        return active + finished[:top]


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
