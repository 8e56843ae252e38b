"""The fault table: inject each fault into real runs and say whether the sweep recovered.

    nice -n 10 python benchmarks/faults.py            # all faults (~15 min on 2 busy cores)
    python benchmarks/faults.py --only driver          # the driver kills only

The faults are the scenarios tests/faults runs (tests/faults/scenarios.py: one copy of each
injection); per fault it prints recovered yes/no, trials and training steps lost, and the time to
recover (from the restart until the sweep made progress again, or until the trial ran again).
Figures are measured here, never typed in.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # gsenet, search and the shared test scenarios

STEPS_PER_EPOCH = 2  # of the scenarios' tiny sweep (faults.scenarios.SWEEP_SPACE)


def driver_rows(folder: Path, dataset: Path) -> list[tuple]:
    from faults.scenarios import NUM_SAMPLES, driver_kills

    points = ("after_prune", "first_report", "mid_trial", "final_report")  # all four, in the order they come
    outcome = driver_kills(folder / "driver", dataset, points)
    running = sum(t["state"] == "RUNNING" for t in outcome.optuna)
    ids = {t["ray_trial_id"] for t in outcome.optuna}
    finished_ok = outcome.returncode == 0 and len(outcome.optuna) == NUM_SAMPLES and not running
    finished_ok = finished_ok and not outcome.left_behind  # no process of a killed driver outlived the sweep
    rerun = sum(
        len(outcome.epochs_trained.get(tid, [])) != n
        for at_kill in outcome.finished_at_kill
        for tid, n in at_kill.items()
    )
    retrained = sum(len(e) - len(set(e)) for tid, e in outcome.epochs_trained.items() if tid in ids)
    rows = []
    # A resumed driver killed at its own kill point before any new epoch had got that far: it was training again.
    next_kill = [s for _, s in outcome.kills[1:]] + [None]
    recovered_s = [s if s is not None else k for s, k in zip(outcome.recover_s, next_kill, strict=False)]
    kills = zip(outcome.kills, recovered_s, outcome.orphans_at_start, outcome.orphans_at_progress, strict=False)
    for (point, after_s), recover, left, still in kills:
        # recovered: the sweep ended right, moved on after this kill, and nothing of the killed driver ran by then
        recovered = finished_ok and recover is not None and still == 0
        name = f"sweep driver SIGKILL ({point}, {after_s:.0f} s in; {left} of its processes left, {still} at progress)"
        rows.append((name, recovered, "-", "-", recover))
    for point in outcome.missed:
        rows.append((f"sweep driver SIGKILL ({point})", None, "-", "-", None))
    lost = max(0, NUM_SAMPLES - len(ids)) + running
    rows.append(
        (
            f"  all {len(outcome.kills)} kills, one sweep",
            finished_ok,
            f"{lost} lost, {rerun} re-run, {len(outcome.optuna) - NUM_SAMPLES} extra",
            f"{retrained * STEPS_PER_EPOCH} ({retrained} epoch(s) retrained)",
            sum(s for s in recovered_s if s is not None),
        )
    )
    return rows


def trial_driver_rows(folder: Path, dataset: Path) -> list[tuple]:
    import ray
    from faults.scenarios import mlflow_down_at_trial_start, permanent_trial_error

    from gsenet.runtime import init_ray

    init_ray(num_cpus=2)
    address = ray.get_runtime_context().gcs_address
    try:
        down = mlflow_down_at_trial_start(folder / "mlflow_down", dataset, address, outage_s=8.0)
        down.server.stop()
        [row] = down.report.rows
        ok = row["state"] == "completed" and down.attempts >= 1
        # time to recover: from MLflow answering again to the sweep's end (the retried trial trained meanwhile)
        rows = [
            (
                f"MLflow down {down.outage_s:.0f} s at trial start",
                ok,
                f"0 ({down.attempts} failed attempt(s) retried)" if ok else "1",
                "0",
                down.recovered_s,
            )
        ]
        bad = permanent_trial_error(folder / "permanent", dataset, address, f"sqlite:///{folder / 'p.db'}")
        [row] = bad.report.rows
        rows.append(
            (
                "non-finite loss in a trial (not retried)",
                row["state"] == "errored" and "non-finite" in bad.permanent,
                "1 (errored at once, as it must)",
                "-",
                None,
            )
        )
        return rows
    finally:
        ray.shutdown()


def print_table(rows: list[tuple]) -> None:
    head = ("fault", "recovered", "trials lost", "steps lost", "time to recover")
    shown = [
        (
            name,
            "-" if ok is None else ("yes" if ok else "NO"),
            str(trials),
            str(steps),
            "-" if seconds is None else f"{seconds:.0f} s",
        )
        for name, ok, trials, steps, seconds in rows
    ]
    widths = [max(len(r[i]) for r in [head, *shown]) for i in range(len(head))]
    for line in [head, tuple("-" * w for w in widths), *shown]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("driver", "trial"), help="one group of faults")
    args = parser.parse_args()
    from fixtures.recordings import make_dataset

    folder = Path(tempfile.mkdtemp(prefix="gsenet-faults-"))
    try:
        dataset = make_dataset(folder / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=5)
        rows = []
        if args.only in (None, "driver"):
            rows += driver_rows(folder, dataset)
        if args.only in (None, "trial"):
            rows += trial_driver_rows(folder, dataset)
        print_table(rows)
        return 0 if all(r[1] is not False for r in rows) else 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
