"""Search efficiency of TPE+ASHA vs random search vs TPE without ASHA, and sweep platform overhead.

    .venv/bin/python benchmarks/search_efficiency.py efficiency --seeds 3     # surrogate, ~5 min on 2 cores
    .venv/bin/python benchmarks/search_efficiency.py overhead                 # real tiny GSENet sweep, ~3 min

efficiency: NOT GSENet training. Trials are the surrogate objective of search/surrogate.py (learning
curves with GSENet-like shape over the default space: widths, width multiplier, dilation depth,
loss weights, lr), run through the real machinery: Ray Tune, our Optuna searcher (PRUNED-aware),
ASHA with the default space's grace period / reduction factor, 2 trials at a time. Every method
gets the same budget of trial-epochs (20 full trials x 20 epochs); "best" is the best validation
loss of a trial trained for all 20 epochs (a model one would ship), as a function of the budget.

overhead: the real path (gsenet.train's TorchTrainer per trial, tiny model, simulated data,
MLflow in a local SQLite file): where a sweep's wall time goes besides training steps.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray import tune  # noqa: E402

from search.progress import SweepMonitor  # noqa: E402
from search.space import load_space  # noqa: E402
from search.surrogate import curve_point, surrogate_trial  # noqa: E402
from search.sweep import build_tuner, init_ray, new_plan, run_sweep  # noqa: E402

METHODS = {
    "tpe+asha": {"searcher": "tpe", "scheduler": "asha"},
    "random": {"searcher": "random", "scheduler": "fifo"},
    "tpe": {"searcher": "tpe", "scheduler": "fifo"},
}
FRACTIONS = [i / 20 for i in range(1, 21)]


class BudgetStopper(tune.Stopper):
    """Stop the whole sweep once `budget` trial-epochs have been reported."""

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.used += 1
        return False

    def stop_all(self) -> bool:
        return self.used >= self.budget


def best_curve(events: list[dict], max_epochs: int, budget: int) -> list[float]:
    """Best full-length val_loss reached after each fraction of the trial-epoch budget."""
    best, used, curve = math.inf, 0, []
    marks = iter(int(f * budget) for f in FRACTIONS)
    mark = next(marks)
    for event in sorted((e for e in events if e["event"] == "result"), key=lambda e: e["t"]):
        used += 1
        while used > mark:
            curve.append(best)
            mark = next(marks, budget + 10**9)
        if event["epoch"] >= max_epochs:
            best = min(best, event["value"])
    while len(curve) < len(FRACTIONS):
        curve.append(best)
    return curve


def run_method(method: str, seed: int, out: Path, max_epochs: int, full_trials: int, asha: dict) -> dict:
    space = load_space("default")
    budget = full_trials * max_epochs
    num_samples = full_trials if METHODS[method]["scheduler"] == "fifo" else 10 * full_trials
    settings = space.settings(
        metric="val_loss", num_samples=num_samples, max_concurrent=2, seed=seed, **METHODS[method]
    )
    name = f"{method.replace('+', '_')}-seed{seed}"
    plan = new_plan(space, settings, name=name, storage_path=str(out / "runs"), optuna_storage="", mlflow_uri="")
    timeline = out / "runs" / name / "trial_timeline.json"
    monitor = SweepMonitor(
        metric="val_loss", mode="min", max_epochs=max_epochs, num_samples=num_samples, timeline_path=str(timeline)
    )
    started = time.time()
    tuner = build_tuner(plan, surrogate_trial, [monitor], stop=BudgetStopper(budget), reuse_actors=True)
    tuner.fit()
    events = json.loads(timeline.read_text())
    trials = len({e["trial"] for e in events if e["event"] == "start"})
    curve = best_curve(events, max_epochs, budget)
    return {"method": method, "seed": seed, "curve": curve, "trials": trials, "wall_s": time.time() - started}


def oracle_best(max_epochs: int, n: int = 4000) -> float:
    """The best of n random configs at full length without noise: how good the space can get."""
    import optuna

    space = load_space("default")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=123))
    best = math.inf
    for _ in range(n):
        params = space.sample(study.ask())
        best = min(best, curve_point(params, max_epochs, seed=-1))
    return best


def efficiency(args: argparse.Namespace) -> None:
    out = Path(args.out)
    init_ray(num_cpus=2)
    asha = {"grace_period": args.grace_period, "reduction_factor": args.reduction_factor}  # None = the space's
    runs = [run_method(m, s, out, 20, args.full_trials, asha) for s in range(args.seeds) for m in METHODS]
    (out / "efficiency.json").write_text(json.dumps(runs, indent=1))
    print(
        f"\nSurrogate objective (search/surrogate.py), budget {args.full_trials * 20} trial-epochs, {args.seeds} seeds"
    )
    used = load_space("default").settings(**asha)
    print(f"ASHA on epoch: grace_period={used.grace_period}, reduction_factor={used.reduction_factor}, max_t=20")
    print(f"(best of 4000 random configs, noiseless: {oracle_best(20):.4f})")
    print(
        f"{'method':<10}{'final best (mean ± sd)':>26}{'trials':>8}{'wall s':>8}   budget fraction to reach random's final best"
    )
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        finals = [r["curve"][-1] for r in mine]
        reach = []
        for r in mine:
            target = next(x for x in runs if x["method"] == "random" and x["seed"] == r["seed"])["curve"][-1]
            reach.append(next((f for f, b in zip(FRACTIONS, r["curve"], strict=True) if b <= target), math.inf))
        sd = statistics.pstdev(finals) if len(finals) > 1 else 0.0
        trials = statistics.mean(r["trials"] for r in mine)
        wall = statistics.mean(r["wall_s"] for r in mine)
        reached = ", ".join("never" if math.isinf(x) else f"{x:.2f}" for x in reach)
        print(f"{method:<10}{statistics.mean(finals):>17.4f} ± {sd:.4f}{trials:>8.1f}{wall:>8.0f}   {reached}")
    print("\nmean best full-length val_loss vs fraction of the budget:")
    print("fraction " + "".join(f"{f:>7.2f}" for f in FRACTIONS[1::2]))
    for method in METHODS:
        curves = [r["curve"] for r in runs if r["method"] == method]
        mean = [statistics.mean(c[i] for c in curves) for i in range(len(FRACTIONS))]
        print(f"{method:<9}" + "".join(f"{v:>7.3f}" if math.isfinite(v) else f"{'-':>7}" for v in mean[1::2]))
    plot_curves(runs, out / "efficiency.png")
    print(f"\ncurve: {out / 'efficiency.png'}   raw: {out / 'efficiency.json'}")


def plot_curves(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for method in METHODS:
        curves = [r["curve"] for r in runs if r["method"] == method]
        mean = [statistics.mean(c[i] for c in curves) for i in range(len(FRACTIONS))]
        points = [(f, v) for f, v in zip(FRACTIONS, mean, strict=True) if math.isfinite(v)]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
    ax.set_xlabel("fraction of trial-epoch budget")
    ax.set_ylabel("best full-length val_loss (surrogate)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def overhead(args: argparse.Namespace) -> None:
    """Run the real smoke sweep and split its trial-slot time into steps, per-epoch extras, startup."""
    from gsenet.simulate import simulate_dataset

    out = Path(args.out)
    data = simulate_dataset(out / "data", recordings=8, seed=0, duration_s=1.5, progress=False)
    space = load_space("smoke")
    settings = space.settings(num_samples=4, max_concurrent=2, scheduler="fifo", register_model="")
    fixed = {"data.path": str(data), "train.epochs": 3, "train.steps_per_epoch": 6}
    name = f"overhead-{int(time.time())}"
    plan = new_plan(
        space,
        settings,
        name=name,
        storage_path=str(out / "runs"),
        cli_fixed=fixed,
        mlflow_uri=f"sqlite:///{out}/mlflow.db",
    )
    init_ray(num_cpus=2)
    started = time.time()
    run_sweep(plan, interval_s=600)
    wall = time.time() - started
    cfg = plan.space().base()
    events = json.loads((Path(plan.experiment_path) / "trial_timeline.json").read_text())
    rows = trial_breakdown(events, cfg)
    slot = wall * settings.max_concurrent
    steps = sum(r["steps_s"] for r in rows)
    print(f"\nReal smoke sweep: {len(rows)} trials x {cfg.train.epochs} epochs, 2 at a time, wall {wall:.1f} s")
    print(f"{'trial':<10}{'startup s':>10}{'steps s':>9}{'epoch extras s':>16}{'teardown s':>12}")
    for r in rows:
        print(
            f"{r['trial']:<10}{r['startup_s']:>10.1f}{r['steps_s']:>9.1f}{r['extras_s']:>16.1f}{r['teardown_s']:>12.1f}"
        )
    parts = {
        "training steps": steps,
        "trial startup (actor, Train worker group, data check, MLflow run)": sum(r["startup_s"] for r in rows),
        "per-epoch validation (PESQ/STOI) + report + checkpoint": sum(r["extras_s"] for r in rows),
        "trial teardown (final models to MLflow, PG release)": sum(r["teardown_s"] for r in rows),
    }
    parts["idle slots (scheduling gaps, sweep start/end, report)"] = slot - sum(parts.values())
    print(f"\ntrial-slot time = wall x concurrency = {slot:.1f} s")
    for label, seconds in parts.items():
        print(f"  {seconds:7.1f} s  {100 * seconds / slot:5.1f}%  {label}")
    print(f"fraction outside training steps: {1 - steps / slot:.1%}")
    (out / "overhead.json").write_text(json.dumps({"wall_s": wall, "rows": rows, "parts": parts}, indent=1))


def trial_breakdown(events: list[dict], cfg) -> list[dict]:
    """Per trial: startup (start -> first report, minus epoch 1's own work), time in training steps
    (audio seen / the audio-per-second throughput training reports), per-epoch extras, teardown."""
    audio_per_step = cfg.data.batch_size * cfg.data.segment_seconds * cfg.train.num_workers
    rows = []
    for trial in sorted({e["trial"] for e in events}):
        mine = sorted((e for e in events if e["trial"] == trial), key=lambda e: e["t"])
        start = next(e["t"] for e in mine if e["event"] == "start")
        end = next(e["t"] for e in mine if e["event"] == "end")
        results = [e for e in mine if e["event"] == "result" and e.get("audio_seconds_per_second")]
        step_s = [cfg.train.steps_per_epoch * audio_per_step / e["audio_seconds_per_second"] for e in results]
        gaps = [b["t"] - a["t"] - s for a, b, s in zip(results, results[1:], step_s[1:], strict=False)]
        extras = statistics.median(gaps) if gaps else 0.0
        rows.append(
            {
                "trial": trial,
                "startup_s": results[0]["t"] - start - step_s[0] - extras,
                "steps_s": sum(step_s),
                "extras_s": extras * len(results),
                "teardown_s": end - results[-1]["t"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("efficiency", "overhead"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--full-trials", type=int, default=20, help="budget = this many full-length trials")
    parser.add_argument("--grace-period", type=int, help="ASHA grace period (default: the default space's)")
    parser.add_argument("--reduction-factor", type=int, help="ASHA reduction factor (default: the default space's)")
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="gsenet-bench-"))
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    efficiency(args) if args.part == "efficiency" else overhead(args)


if __name__ == "__main__":
    main()
