"""Where a training run's (and so a sweep trial's) fixed start-up time goes, phase by phase.

    python benchmarks/startup_speed.py            # ~1-2 min on 2 cores

Measures, with timestamps, the pieces one `gsenet.train.build_trainer` + `fit` goes through
before its first training step, without changing any of them:
- cold imports in a fresh Python process (a trial starts three: its driver, the Train controller
  and the worker), for torch, ray, ray.train.torch, mlflow and gsenet.train;
- the dataset check and the MLflow run creation on the driver (simulated data, SQLite MLflow);
- a TorchTrainer with a loop that only stamps the clock: fit() -> the loop running (controller,
  placement group, worker process, gloo group), the loop's own gsenet imports, building the model
  and opening the dataset, and the end of the loop -> fit() returning (report, teardown).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the simulated-data fixture

IMPORTS = ("torch", "ray", "ray.train.torch", "mlflow", "gsenet.train")


def cold_import_seconds(module: str, repeats: int = 2) -> float:
    """Median wall time of `python -c "import module"` minus a bare `python -c pass`."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    bare = statistics.median(run("pass") for _ in range(repeats))
    return statistics.median(run(f"import {module}") for _ in range(repeats)) - bare


def stamping_loop(config: dict) -> None:
    """A Train worker loop that only records when each start-up piece is done."""
    stamps = {"loop_started": time.time()}
    import ray.train

    from gsenet.config import from_dict
    from gsenet.data import SegmentDataset
    from gsenet.model import GSENet

    stamps["worker_imports_done"] = time.time()
    cfg = from_dict(config["config"])
    GSENet(cfg.model)
    SegmentDataset(Path(cfg.data.path) / "train", cfg.data, cfg.model.sample_rate, seed=0, length=8)
    stamps["model_and_data_ready"] = time.time()
    ray.train.report(stamps)
    # Train V2 keeps a report's metrics only with a checkpoint: hand the stamps over in a file.
    Path(config["stamp_file"]).write_text(json.dumps(stamps))


def main() -> None:
    import ray.train
    from fixtures.recordings import make_dataset
    from ray.train.torch import TorchTrainer

    from gsenet import tracking
    from gsenet.checks import check_dataset
    from gsenet.config import ExperimentConfig, apply_overrides, flatten, to_dict
    from gsenet.runtime import init_ray

    rows = [(f"cold import {m} (fresh process)", cold_import_seconds(m)) for m in IMPORTS]
    with tempfile.TemporaryDirectory() as folder:
        data = make_dataset(Path(folder) / "ds", n_per_split={"train": 3, "val": 2, "test": 1}, seconds=1.5)
        cfg = apply_overrides(
            ExperimentConfig(),
            {"data.path": str(data), "data.segment_seconds": 0.5, "model.widths": [4, 4, 8, 8, 8, 8]},
        )
        start = time.perf_counter()
        check_dataset(data, cfg.data, cfg.model.sample_rate, use_cache=False)
        rows.append(("dataset check (driver)", time.perf_counter() - start))
        start = time.perf_counter()
        uri = f"sqlite:///{folder}/mlruns.db"
        tracking.start_training_run(uri, "startup", "startup", "key", params=flatten(cfg), config_yaml="")
        rows.append(("MLflow run created (driver, SQLite, first use)", time.perf_counter() - start))
        start = time.perf_counter()
        init_ray(num_cpus=2)
        rows.append(("local Ray started (once per sweep)", time.perf_counter() - start))
        trainer = TorchTrainer(
            stamping_loop,
            train_loop_config={"config": to_dict(cfg), "stamp_file": f"{folder}/stamps.json"},
            scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(
                name="startup", storage_path=f"{folder}/runs", failure_config=ray.train.FailureConfig(max_failures=0)
            ),
        )
        fit_called = time.time()
        trainer.fit()
        fit_returned = time.time()
        stamps = json.loads(Path(folder, "stamps.json").read_text())
    rows += [
        (
            "fit() -> worker loop running (controller, placement group, worker, gloo)",
            stamps["loop_started"] - fit_called,
        ),
        ("worker: import gsenet model/data", stamps["worker_imports_done"] - stamps["loop_started"]),
        ("worker: build model, open dataset", stamps["model_and_data_ready"] - stamps["worker_imports_done"]),
        ("report -> fit() returned (teardown)", fit_returned - stamps["model_and_data_ready"]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'phase':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")
    print(f"{'fit() call to fit() return':<{width}}  {fit_returned - fit_called:7.2f}")


if __name__ == "__main__":
    main()
