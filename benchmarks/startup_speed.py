"""Where a training run's (and so a sweep trial's) fixed start-up time goes, phase by phase.

    python benchmarks/startup_speed.py            # ~1-2 min on 2 cores
    python benchmarks/startup_speed.py --cpu-by-process 4   # CPU s per process, 4 real fits per variant

Measures, with timestamps, the pieces one `gsenet.train.build_trainer` + `fit` goes through
before its first training step, without changing any of them:
- cold imports in a fresh Python process (a trial starts three: its driver, the Train controller
  and the worker), for torch, ray, ray.train.torch, mlflow and gsenet.train;
- the dataset check and the MLflow run creation on the driver (simulated data, SQLite MLflow);
- a TorchTrainer with a loop that only stamps the clock: fit() -> the loop running (controller,
  placement group, worker process, gloo group), the loop's own gsenet imports, building the model
  and opening the dataset, and the end of the loop -> fit() returning (report, teardown).

`--cpu-by-process N` instead runs N rounds of two real tiny `gsenet.train.fit` calls on one local
Ray, interleaved (Ray Train's default callbacks, then gsenet's trainer, which starts no
DatasetManager), and samples /proc every 0.2 s: the CPU seconds each kind of process (Ray names its
actors' processes `ray::<Actor>`) used per fit, and the fits' wall times.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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


class ProcessCpu:
    """CPU seconds used since start(), summed by process name, from /proc (sampled in a thread).

    A process is named by the last non-idle command line it showed (Ray renames an idle worker
    `ray::IDLE` to `ray::<Actor>` when an actor takes it); one that has exited keeps its last sample.
    """

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.tick = every_s, os.sysconf("SC_CLK_TCK")
        self.names: dict[int, str] = {}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._sample(baseline=True)  # what ran before start() does not count
        threading.Thread(target=self._loop, daemon=True).start()

    def _sample(self, baseline: bool = False) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / self.tick
            self.first.setdefault(pid, cpu if baseline else 0.0)
            self.last[pid] = cpu
            if name.startswith("ray::"):  # "ray::TrainController.run" while a method runs
                name = name.split()[0].split(".")[0]
            if name and name != "ray::IDLE" or pid not in self.names:
                self.names[pid] = Path(name).name if name.startswith("/") else name

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def by_name(self) -> dict[str, float]:
        self._stop.set()
        totals: dict[str, float] = collections.defaultdict(float)
        for pid, cpu in self.last.items():
            totals[self.names.get(pid) or "(no name)"] += cpu - self.first[pid]
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def cpu_by_process(fits: int) -> None:
    """N rounds of two tiny real fits each (gsenet.train.fit, 1 worker, 1 epoch of 3 steps, SQLite
    MLflow), interleaved (order swapped each round): with Ray Train's default callbacks (what a
    plain TorchTrainer starts), and with gsenet's trainer as it is (no DatasetManager actor). CPU
    seconds per process and fit, by variant."""
    from fixtures.recordings import make_dataset
    from ray.train.torch import TorchTrainer

    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.failures import GSENetTrainer
    from gsenet.runtime import init_ray, shutdown_ray
    from gsenet.train import fit

    variants = {
        "Ray's callbacks": TorchTrainer._create_default_callbacks,
        "gsenet's": GSENetTrainer._create_default_callbacks,
    }
    walls = {label: [] for label in variants}
    totals = {label: collections.defaultdict(float) for label in variants}
    with tempfile.TemporaryDirectory() as folder:
        data = make_dataset(Path(folder) / "ds", n_per_split={"train": 3, "val": 2, "test": 1}, seconds=1.0, seed=7)
        init_ray(num_cpus=2)
        time.sleep(5)  # Ray's own start-up settles before anything counts
        for i in range(fits):  # each round swaps which variant goes first: neither pays Ray's first-use costs alone
            for label, callbacks in sorted(variants.items(), reverse=i % 2 == 1):
                GSENetTrainer._create_default_callbacks = callbacks  # read by fit() in this process
                cfg = apply_overrides(ExperimentConfig(), {
                    "data.path": str(data), "data.segment_seconds": 0.5, "data.batch_size": 2,
                    "model.widths": [4, 4, 8, 8, 8, 8], "model.dilation_depth": 1, "optim.warmup_steps": 1,
                    "train.epochs": 1, "train.steps_per_epoch": 3, "train.metric_subset": 0,
                    "train.name": f"fit{i}-{label[:3]}", "train.storage_path": f"{folder}/runs",
                    "tracking.mlflow_uri": f"sqlite:///{folder}/mlflow.db",
                })  # fmt: skip
                sampler, start = ProcessCpu(), time.perf_counter()
                try:
                    fit(cfg)
                finally:
                    GSENetTrainer._create_default_callbacks = variants["gsenet's"]
                walls[label].append(time.perf_counter() - start)
                time.sleep(1)  # the run's helper processes exit and take their last sample
                for name, cpu in sampler.by_name().items():
                    totals[label][name] += cpu
        shutdown_ray()
    labels, cores = list(variants), os.cpu_count()
    names = sorted(
        {n for t in totals.values() for n, cpu in t.items() if cpu / fits >= 0.1}, key=lambda n: -totals[labels[0]][n]
    )
    print(f"\n{fits} interleaved fits per variant, CPU s per fit (median wall in the last rows)")
    print(f"{'process':<40}  " + "  ".join(f"{label:>16}" for label in labels))
    for name in names:
        print(f"{name[:40]:<40}  " + "  ".join(f"{totals[label][name] / fits:16.2f}" for label in labels))
    print(f"{'all processes':<40}  " + "  ".join(f"{sum(totals[label].values()) / fits:16.2f}" for label in labels))
    print(f"{'wall s per fit':<40}  " + "  ".join(f"{statistics.median(walls[label]):16.2f}" for label in labels))
    spreads = "  ".join(f"{label}: {min(walls[label]):.1f}-{max(walls[label]):.1f}" for label in labels)
    print(f"(wall spread {spreads}; the machine had {cores} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-by-process", type=int, default=0, metavar="N", help="N fits, CPU per process")
    parser.add_argument("--rounds", type=int, default=2, help="stub fits per controller poll interval")
    args = parser.parse_args()
    if args.cpu_by_process:
        return cpu_by_process(args.cpu_by_process)
    phases(args.rounds)


def stub_fit(folder: str, cfg, name: str, controller_poll_s: str) -> dict:
    """One TorchTrainer fit of `stamping_loop`; its start-up and teardown phases in seconds."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from gsenet.config import to_dict
    from gsenet.runtime import CONTROLLER_POLL_ENV

    os.environ[CONTROLLER_POLL_ENV] = controller_poll_s  # read by fit(), handed to the controller
    stamp_file = f"{folder}/{name}.json"
    trainer = TorchTrainer(
        stamping_loop,
        train_loop_config={"config": to_dict(cfg), "stamp_file": stamp_file},
        scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=f"{folder}/runs", failure_config=ray.train.FailureConfig(max_failures=0)
        ),
    )
    fit_called = time.time()
    trainer.fit()
    fit_returned = time.time()
    stamps = json.loads(Path(stamp_file).read_text())
    return {
        "fit() -> worker loop running (controller, placement group, worker, gloo)": stamps["loop_started"] - fit_called,
        "worker: import gsenet model/data": stamps["worker_imports_done"] - stamps["loop_started"],
        "worker: build model, open dataset": stamps["model_and_data_ready"] - stamps["worker_imports_done"],
        "report -> fit() returned (teardown)": fit_returned - stamps["model_and_data_ready"],
        "fit() call to fit() return": fit_returned - fit_called,
    }


def phases(rounds: int = 2) -> None:
    from fixtures.recordings import make_dataset

    from gsenet import tracking
    from gsenet.checks import check_dataset
    from gsenet.config import ExperimentConfig, apply_overrides, flatten
    from gsenet.runtime import CONTROLLER_POLL_S, init_ray

    rows = [(f"cold import {m} (fresh process)", cold_import_seconds(m)) for m in IMPORTS]
    polls = {"Ray's default (2 s)": "2.0", f"gsenet's ({CONTROLLER_POLL_S} s)": CONTROLLER_POLL_S}
    fits: dict[str, list[dict]] = {label: [] for label in polls}
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
        for i in range(rounds):  # interleaved: the controller's poll interval, Ray's then gsenet's
            for label, seconds in polls.items():
                fits[label].append(stub_fit(folder, cfg, f"fit{i}-{seconds}", seconds))
    labels = list(polls)
    width = max(len(name) for name in [*(name for name, _ in rows), *fits[labels[0]][0]])
    print(f"{'phase':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")
    print(f"\nA TorchTrainer fit, by the Train controller's poll interval (median of {rounds} interleaved fits each):")
    print(f"{'phase':<{width}}  " + "  ".join(f"{label:>22}" for label in labels))
    for phase in fits[labels[0]][0]:
        medians = [statistics.median(f[phase] for f in fits[label]) for label in labels]
        print(f"{phase:<{width}}  " + "  ".join(f"{m:22.2f}" for m in medians))
    before, after = (statistics.median(f["fit() call to fit() return"] for f in fits[label]) for label in labels)
    print(f"fit() to its return: {before / after:.2f}x faster with gsenet's setting")


if __name__ == "__main__":
    main()
