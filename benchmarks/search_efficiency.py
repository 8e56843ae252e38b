"""Search efficiency: the sweep's searcher + scheduler against random search, and platform overhead.

    nice -n 10 .venv/bin/python benchmarks/search_efficiency.py efficiency   # 20 seeds, K=2 and 8: ~6 min CPU
    nice -n 10 .venv/bin/python benchmarks/search_efficiency.py ray-check --seeds 2   # 8 real Ray sweeps, ~10 min
    .venv/bin/python benchmarks/search_efficiency.py diagnose                         # early-epoch ranking, TPE split
    .venv/bin/python benchmarks/search_efficiency.py overhead                           # real tiny GSENet sweep

efficiency: the multi-fidelity Hartmann benchmarks of mf-prior-bench (mfh3/mfh6, good/bad: how well
low fidelities rank configs; search/surrogate.py MFHartmann, checked against the package) and the
GSENet-like surrogate (search/surrogate.py curve_point, over the default space). A trial's epoch e
of max_epochs (20, the default space's) is fidelity z = e * 100 / 20 of the benchmark, so the
default space's grace period and reduction factor mean the same fraction of a full trial. Every
method gets the same budget of trial-epochs (= fidelity units / 5) and runs `max_concurrent`
trials at a time; "best" is the best value of a trial that reached the last epoch (z = 100,
noiseless), as a function of the budget used.

The searcher and scheduler are the very objects `gsenet search` builds (search.searcher.make_searcher,
search.sweep.make_scheduler); Ray's per-trial cost (~1 s even for a no-op trial) makes 1000+ sweeps
too slow on 2 cores, so a plain loop (`PlainTune`) makes the calls Tune's controller makes
(suggest, on_trial_add, on_trial_result, on_trial_complete) with K trials advancing one epoch per
tick. `ray-check` runs real Ray Tune sweeps (build_tuner + the surrogate trainable), records every
call into the searcher and scheduler, replays Ray's order of events through PlainTune and checks
that both made the same suggestions, ASHA decisions and Optuna states.

overhead: the real path (gsenet.train's TorchTrainer per trial, tiny model, simulated data,
MLflow in a local SQLite file): where a sweep's wall time goes besides training steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from ray.tune.schedulers import FIFOScheduler, TrialScheduler  # noqa: E402

from search import searcher as searcher_module  # noqa: E402
from search import sweep as sweep_module  # noqa: E402
from search.scheduler import ResumableASHA  # noqa: E402
from search.searcher import PrunedAwareOptunaSearch, make_searcher  # noqa: E402
from search.space import Param, SearchSpace, SweepSettings, load_space  # noqa: E402
from search.surrogate import HARTMANN_MINIMUM, MAX_FIDELITY, MF_HARTMANN, MFHartmann, curve_point  # noqa: E402
from search.sweep import make_scheduler  # noqa: E402

METRIC = "val_loss"  # what every problem reports (lower is better)
MAX_EPOCHS = 20
PROBLEMS = (*MF_HARTMANN, "surrogate")
# The sweep settings each method changes; everything else comes from the default space's `sweep:`.
METHODS = {
    "default": {},  # search/spaces/default.yaml as shipped
    # The default until issue 14 (TPE + ASHA, grace 2 of 20 epochs, reduction factor 3, 8 random startups)
    "old-default": {
        **{"searcher": "tpe", "scheduler": "asha", "brackets": 1},
        **{"grace_period": 2, "reduction_factor": 3, "n_startup_trials": 8},
    },
    "tpe+asha": {"searcher": "tpe", "scheduler": "asha", "brackets": 1},
    "tpe+hyperband": {"searcher": "tpe", "scheduler": "asha", "brackets": 3},
    "tpe": {"searcher": "tpe", "scheduler": "fifo"},
    "random+asha": {"searcher": "random", "scheduler": "asha", "brackets": 1},
    "random": {"searcher": "random", "scheduler": "fifo"},
}
MARKS = (0.1, 0.3, 0.5, 1.0)
GRID = tuple(i / 40 for i in range(1, 41))


# ----------------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    name: str
    space: SearchSpace
    max_epochs: int
    loss: Callable[[dict[str, Any], int], float]  # (params, epoch 1..max_epochs) -> value to minimise
    minimum: float = float("nan")  # the global minimum at the last epoch, when known


def make_problem(name: str, seed: int, max_epochs: int = MAX_EPOCHS) -> Problem:
    if name == "surrogate":
        space = load_space("default")
        return Problem(name, space, max_epochs, lambda params, epoch: curve_point(params, epoch, seed))
    fn = MFHartmann.named(name, seed)
    space = SearchSpace(tuple(Param(k, "uniform", low=0.0, high=1.0) for k in fn.keys()), source=name)
    step = MAX_FIDELITY // max_epochs
    return Problem(
        name, space, max_epochs, lambda params, epoch: fn.error(params, epoch * step), HARTMANN_MINIMUM[fn.dims]
    )


def method_settings(method: str, seed: int, max_concurrent: int, overrides: dict[str, Any]) -> SweepSettings:
    values = {**(overrides if method not in ("random", "old-default") else {}), **METHODS[method]}
    return load_space("default").settings(
        metric=METRIC, mode="min", num_samples=10**6, max_concurrent=max_concurrent, seed=seed, **values
    )


# ----------------------------------------------------------------------------------------------
# Tune's controller, without Ray
# ----------------------------------------------------------------------------------------------
@dataclass
class SimTrial:
    trial_id: str  # all that ASHA reads of a Tune Trial
    params: dict[str, Any]
    epoch: int = 0
    last_result: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlainTune:
    """The calls Tune's controller makes into the searcher and the scheduler, for trials whose
    epochs are `problem.loss` evaluations. `report` = one epoch of one running trial."""

    problem: Problem
    settings: SweepSettings
    log_path: str = ""  # record every call (see Recording*), as the Ray run of ray-check does
    running: dict[str, SimTrial] = field(default_factory=dict)
    results: list[tuple[str, int, float]] = field(default_factory=list)  # (trial, epoch, value)

    def __post_init__(self) -> None:
        self.searcher = make_searcher(self.problem.space, self.settings, self.problem.max_epochs)
        self.scheduler = make_scheduler(self.settings, self.problem.max_epochs)
        if self.log_path:
            record(self.searcher, self.log_path)
            record(self.scheduler, self.log_path)

    def start(self, trial_id: str) -> None:
        params = self.searcher.suggest(trial_id)
        trial = self.running[trial_id] = SimTrial(trial_id, params)
        self.scheduler.on_trial_add(None, trial)

    def report(self, trial_id: str, finish_last: bool = True) -> str:
        """One epoch of a running trial. Under Ray, a trial that ran its last epoch without being
        stopped finishes on Tune's next "done" result, which may come after other trials' results:
        `finish_last=False` leaves that to `finish` (ray-check replays Ray's order)."""
        trial = self.running[trial_id]
        trial.epoch += 1
        value = self.problem.loss(trial.params, trial.epoch)
        self.results.append((trial_id, trial.epoch, value))
        result = {"epoch": trial.epoch, METRIC: value, "training_iteration": trial.epoch}
        trial.last_result = result
        decision = self.scheduler.on_trial_result(None, trial, result)
        if decision != TrialScheduler.STOP:
            self.searcher.on_trial_result(trial_id, result)  # Tune tells the searcher only if not stopped
        if decision == TrialScheduler.STOP or (finish_last and trial.epoch >= self.problem.max_epochs):
            self.finish(trial_id)
        return decision

    def finish(self, trial_id: str) -> None:
        trial = self.running.pop(trial_id)
        self.scheduler.on_trial_complete(None, trial, trial.last_result)
        self.searcher.on_trial_complete(trial_id, trial.last_result)


def simulate(problem: Problem, settings: SweepSettings, budget: int) -> PlainTune:
    """K = max_concurrent trials at a time, each one epoch per tick, until `budget` epochs are used."""
    np.random.seed(settings.seed)  # Ray's ASHA draws each trial's bracket from NumPy's global RNG
    tune = PlainTune(problem, settings)
    started = 0
    while len(tune.results) < budget:
        while len(tune.running) < settings.max_concurrent:
            tune.start(f"{started:05d}")
            started += 1
        for trial_id in list(tune.running):
            tune.report(trial_id)
            if len(tune.results) >= budget:
                break
    return tune


def best_curve(results: list[tuple[str, int, float]], max_epochs: int, budget: int) -> list[float]:
    """Best last-epoch value after each fraction of the budget in GRID."""
    best, curve, used = math.inf, [], 0
    for fraction in GRID:
        while used < min(len(results), round(fraction * budget)):
            _, epoch, value = results[used]
            if epoch >= max_epochs:
                best = min(best, value)
            used += 1
        curve.append(best)
    return curve


def improvements(results: list[tuple[str, int, float]], max_epochs: int, budget: int) -> list[tuple[float, float]]:
    """(budget fraction used, new best) each time a full-length trial improves the best."""
    best, steps = math.inf, []
    for used, (_, epoch, value) in enumerate(results, start=1):
        if epoch >= max_epochs and value < best:
            best = value
            steps.append((used / budget, value))
    return steps


# ----------------------------------------------------------------------------------------------
# The same decisions under Ray Tune (ray-check)
# ----------------------------------------------------------------------------------------------
def _append(path: str, entry: list) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


class RecordingSearcher(PrunedAwareOptunaSearch):
    """Our searcher, also writing each suggestion and the state Optuna was told to `log_path`."""

    log_path = ""

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        _append(self.log_path, ["suggest", trial_id, params])
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        super().on_trial_complete(trial_id, result, error)
        frozen = self._ot_study._storage.get_trial(self._ot_trials[trial_id]._trial_id)
        _append(self.log_path, ["told", trial_id, frozen.state.name, frozen.value, len(frozen.intermediate_values)])


class RecordingASHA(ResumableASHA):
    log_path = ""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        _append(self.log_path, ["result", trial.trial_id, int(result["epoch"]), result[METRIC], decision])
        return decision


class RecordingFIFO(FIFOScheduler):
    log_path = ""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        _append(self.log_path, ["result", trial.trial_id, int(result["epoch"]), result[METRIC], decision])
        return decision


def record(obj: Any, log_path: str) -> Any:
    """Turn a searcher/scheduler built by the sweep's own functions into its recording twin."""
    twins = {PrunedAwareOptunaSearch: RecordingSearcher, ResumableASHA: RecordingASHA, FIFOScheduler: RecordingFIFO}
    obj.__class__ = twins[type(obj)]
    obj.log_path = log_path
    return obj


class BudgetStopper:
    """Stop the whole sweep once `budget` trial-epochs have been reported (not counting Tune's
    repeated last result of a trainable that returned)."""

    def __init__(self, budget: int):
        self.budget, self.seen = budget, set()

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.seen.add((trial_id, result.get("epoch")))
        return False

    def stop_all(self) -> bool:
        return len(self.seen) >= self.budget


def read_log(path: Path, budget: int) -> list[list]:
    """The recorded calls up to the budget-th result (after it Ray stops the remaining trials)."""
    entries, results = [], 0
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if results >= budget:
            break
        results += entry[0] == "result"
        entries.append(entry)
    return entries


def ray_sweep(method: str, seed: int, concurrency: int, budget: int, max_epochs: int, out: Path) -> Path:
    """One real Ray Tune sweep of the surrogate trainable (build_tuner, as `gsenet search`)."""
    from ray.tune import Stopper

    from search.surrogate import surrogate_trial
    from search.sweep import build_tuner, new_plan

    class Stop(BudgetStopper, Stopper):
        pass

    space = load_space("default")
    settings = method_settings(method, seed, concurrency, {})
    name = f"{method.replace('+', '_')}-k{concurrency}-seed{seed}"
    log = out / f"{name}.ray.jsonl"
    log.unlink(missing_ok=True)
    plan = new_plan(
        space,
        settings,
        name=name,
        storage_path=str(out / "runs"),
        cli_fixed={"train.epochs": max_epochs},
        optuna_storage="",
        mlflow_uri=f"sqlite:///{out}/mlflow.db",
    )
    real_searcher, real_scheduler = searcher_module.make_searcher, sweep_module.make_scheduler
    searcher_module.make_searcher = lambda *a, **k: record(real_searcher(*a, **k), str(log))
    sweep_module.make_scheduler = lambda *a, **k: record(real_scheduler(*a, **k), str(log))
    try:
        np.random.seed(seed)  # ASHA's bracket draws (the controller runs in this process)
        build_tuner(plan, surrogate_trial, stop=Stop(budget), reuse_actors=True).fit()
    finally:
        searcher_module.make_searcher, sweep_module.make_scheduler = real_searcher, real_scheduler
    return log


def replay(ray_log: list[list], method: str, seed: int, concurrency: int, max_epochs: int, out: Path) -> list[list]:
    """Drive PlainTune through Ray's order of suggestions and results; its own calls, recorded."""
    path = out / f"replay-{method}-{concurrency}-{seed}.jsonl"
    path.unlink(missing_ok=True)
    settings = method_settings(method, seed, concurrency, {})
    tune = PlainTune(make_problem("surrogate", seed, max_epochs), settings, log_path=str(path))
    np.random.seed(seed)
    for entry in ray_log:
        if entry[0] == "suggest":
            tune.start(entry[1])
        elif entry[0] == "result":
            tune.report(entry[1], finish_last=False)
        elif entry[0] == "told" and entry[1] in tune.running:
            tune.finish(entry[1])
    return [json.loads(line) for line in path.read_text().splitlines()]


def ray_check(args: argparse.Namespace) -> None:
    from search.sweep import init_ray

    out = Path(args.out)
    init_ray(num_cpus=2)
    budget, max_epochs = args.check_budget, args.check_epochs
    print(f"Ray Tune vs PlainTune, surrogate over the default space, {max_epochs} epochs, budget {budget}")
    print(f"{'method':<14}{'K':>3}{'seed':>5}{'trials':>8}{'calls':>7}{'stopped':>9}  same decisions")
    all_same = True
    for method in args.check_methods:
        for concurrency in (1, 2):
            for seed in range(args.seeds):
                ray_log = read_log(ray_sweep(method, seed, concurrency, budget, max_epochs, out), budget)
                mine = replay(ray_log, method, seed, concurrency, max_epochs, out)[: len(ray_log)]
                same = mine == ray_log
                all_same &= same
                trials = sum(e[0] == "suggest" for e in ray_log)
                stopped = sum(e[0] == "result" and e[4] == TrialScheduler.STOP and e[2] < max_epochs for e in ray_log)
                first = next((i for i, (a, b) in enumerate(zip(mine, ray_log, strict=False)) if a != b), None)
                verdict = "yes" if same else f"NO (first difference at call {first}: {mine[first]} vs {ray_log[first]})"
                print(f"{method:<14}{concurrency:>3}{seed:>5}{trials:>8}{len(ray_log):>7}{stopped:>9}  {verdict}")
    print("all the same" if all_same else "DIFFERENCES")


# ----------------------------------------------------------------------------------------------
# Efficiency: many seeds, plain loop
# ----------------------------------------------------------------------------------------------
def run_all(args: argparse.Namespace, overrides: dict[str, Any]) -> list[dict]:
    budget = args.full_trials * MAX_EPOCHS
    runs = []
    for problem_name in args.problems:
        for concurrency in args.concurrency:
            for method in args.methods:
                for seed in range(args.seeds):
                    started = time.process_time()
                    settings = method_settings(method, seed, concurrency, overrides)
                    tune = simulate(make_problem(problem_name, seed), settings, budget)
                    runs.append(
                        {
                            "problem": problem_name,
                            "k": concurrency,
                            "method": method,
                            "seed": seed,
                            "curve": best_curve(tune.results, MAX_EPOCHS, budget),
                            "steps": improvements(tune.results, MAX_EPOCHS, budget),
                            "trials": len({r[0] for r in tune.results}),
                            "full": sum(r[1] >= MAX_EPOCHS for r in tune.results),
                            "cpu_s": time.process_time() - started,
                        }
                    )
            print(f"  {problem_name} K={concurrency}: {time.process_time():.0f} s CPU so far", file=sys.stderr)
    return runs


def at(curve: list[float], fraction: float) -> float:
    return curve[min(range(len(GRID)), key=lambda i: abs(GRID[i] - fraction))]


def reach(steps: list[tuple[float, float]], target: float) -> float:
    """The budget fraction at which the best first is at or below `target` (inf: never)."""
    return next((fraction for fraction, best in steps if best <= target), math.inf)


def summarise(runs: list[dict]) -> list[dict]:
    """Per (problem, K, method): finals, best at MARKS, fraction to reach random's final best."""
    rows = []
    for problem_name, concurrency in dict.fromkeys((r["problem"], r["k"]) for r in runs):
        group = [r for r in runs if r["problem"] == problem_name and r["k"] == concurrency]
        random_final = {r["seed"]: r["curve"][-1] for r in group if r["method"] == "random"}
        for method in dict.fromkeys(r["method"] for r in group):
            mine = [r for r in group if r["method"] == method]
            finals = [r["curve"][-1] for r in mine]
            reached = [reach(r["steps"], random_final[r["seed"]]) for r in mine if r["seed"] in random_final]
            rows.append(
                {
                    "problem": problem_name,
                    "k": concurrency,
                    "method": method,
                    "n": len(mine),
                    "final_mean": statistics.mean(finals),
                    "final_sd": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                    "marks": [statistics.mean(at(r["curve"], m) for r in mine) for m in MARKS],
                    "reach_median": statistics.median(reached) if reached else math.nan,
                    "reach_third": sum(x <= 1 / 3 + 1e-9 for x in reached) / len(reached) if reached else math.nan,
                    "trials": statistics.mean(r["trials"] for r in mine),
                    "full": statistics.mean(r["full"] for r in mine),
                }
            )
    return rows


def goal_check(rows: list[dict], method: str) -> list[str]:
    """The issue's goals on mfh6_good / mfh6_bad for `method`, per K."""
    lines = []
    for row in rows:
        if row["method"] != method or row["problem"] not in ("mfh6_good", "mfh6_bad"):
            continue
        rand = next(r for r in rows if r["method"] == "random" and (r["problem"], r["k"]) == (row["problem"], row["k"]))
        se = math.sqrt(row["final_sd"] ** 2 / row["n"] + rand["final_sd"] ** 2 / rand["n"])
        gain = rand["final_mean"] - row["final_mean"]
        ok1, ok2 = row["reach_third"] >= 0.8, gain > se
        lines.append(
            f"{row['problem']} K={row['k']}: reaches random's final best within 1/3 of the budget in "
            f"{row['reach_third']:.0%} of seeds (goal 80%: {'met' if ok1 else 'NOT met'}); final best "
            f"{gain:+.4f} better than random, {gain / se if se else math.inf:.1f} standard errors "
            f"(goal > 1: {'met' if ok2 else 'NOT met'})"
        )
    return lines


def print_table(rows: list[dict], budget: int) -> None:
    header = "best at " + " / ".join(f"{m:.0%}" for m in MARKS)
    for problem_name, concurrency in dict.fromkeys((r["problem"], r["k"]) for r in rows):
        print(f"\n{problem_name}, {concurrency} trials at a time, budget {budget} trial-epochs")
        print(
            f"{'method':<15}{'final best (mean ± sd)':>24}  {header:<36}{'reach':>7}{'<=1/3':>7}{'trials':>8}{'full':>6}"
        )
        for r in (r for r in rows if (r["problem"], r["k"]) == (problem_name, concurrency)):
            marks = " / ".join(f"{v:.3f}" if math.isfinite(v) else "-" for v in r["marks"])
            reach_text = f"{r['reach_median']:.2f}" if math.isfinite(r["reach_median"]) else "never"
            print(
                f"{r['method']:<15}{r['final_mean']:>15.4f} ± {r['final_sd']:.4f}  {marks:<36}{reach_text:>7}"
                f"{r['reach_third']:>7.0%}{r['trials']:>8.1f}{r['full']:>6.1f}"
            )


def plot_curves(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((r["problem"], r["k"]) for r in runs))
    problems = list(dict.fromkeys(g[0] for g in groups))
    ks = list(dict.fromkeys(g[1] for g in groups))
    fig, axes = plt.subplots(len(ks), len(problems), figsize=(3.6 * len(problems), 3.0 * len(ks)), squeeze=False)
    for problem_name, concurrency in groups:
        ax = axes[ks.index(concurrency)][problems.index(problem_name)]
        minimum = make_problem(problem_name, 0).minimum
        for method in dict.fromkeys(r["method"] for r in runs):
            curves = [
                r["curve"] for r in runs if (r["problem"], r["k"], r["method"]) == (problem_name, concurrency, method)
            ]
            if not curves:
                continue
            mean = [statistics.mean(c[i] for c in curves) for i in range(len(GRID))]
            shift = minimum if math.isfinite(minimum) else 0.0
            points = [(f, v - shift) for f, v in zip(GRID, mean, strict=True) if math.isfinite(v)]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=method, lw=2 if method == "default" else 1)
        ax.axvline(1 / 3, color="grey", lw=0.5, ls=":")
        if math.isfinite(minimum):
            ax.set_yscale("log")
        ax.set_title(f"{problem_name}, K={concurrency}", fontsize=9)
        ax.set_xlabel("fraction of budget", fontsize=8)
        ax.set_ylabel("regret (best - minimum)" if math.isfinite(minimum) else "best val_loss", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def spearman(a: list[float], b: list[float]) -> float:
    ranks = [np.argsort(np.argsort(x)) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def diagnose(args: argparse.Namespace) -> None:
    """Why early stopping helps or hurts: how well an early epoch ranks configs by their final
    value, and what ASHA keeps at a rung (reduction factor 3)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    epochs = (1, 2, 4, 6, 10, 18)
    print(f"random configs per problem: {args.diag_configs}; values at epoch e of {MAX_EPOCHS} (z = 5e)")
    print(
        f"{'problem':<11}"
        + "".join(f"{'rho e=' + str(e):>10}" for e in epochs)
        + "   share of the true top 10% in the top 1/3 at e"
    )
    for problem_name in args.problems:
        problem = make_problem(problem_name, seed=0)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        configs = [problem.space.sample(study.ask()) for _ in range(args.diag_configs)]
        final = [problem.loss(c, MAX_EPOCHS) for c in configs]
        top = set(np.argsort(final)[: len(final) // 10])
        rhos, kept = [], []
        for e in epochs:
            early = [problem.loss(c, e) for c in configs]
            rhos.append(spearman(early, final))
            kept.append(len(top & set(np.argsort(early)[: len(early) // 3])) / len(top))
        print(f"{problem_name:<11}" + "".join(f"{r:>10.2f}" for r in rhos) + "   " + " ".join(f"{k:.0%}" for k in kept))
    good_group_precision(args)


def good_group_precision(args: argparse.Namespace) -> None:
    """At the end of a sweep, TPE's "good" group (Optuna's own split: COMPLETE trials first, then
    PRUNED ones by the last epoch reached, then by value): which share of it is truly among the
    best as many trials the sweep tried, by their value at the last epoch?"""
    import optuna
    from optuna.samplers._tpe.sampler import _split_trials, default_gamma

    budget = args.full_trials * MAX_EPOCHS
    overrides = parse_overrides(args.set)
    print(f"\nTPE's good group at the end ({args.full_trials} full trials of budget, K=2, {args.diag_seeds} seeds):")
    print(
        f"{'problem':<11}{'method':<14}{'trials':>8}{'good':>6}{'complete in good':>18}{'precision':>11}{'chance':>8}"
    )
    for problem_name in args.problems:
        for method in ("old-default", "default", "tpe"):
            rows = []
            for seed in range(args.diag_seeds):
                problem = make_problem(problem_name, seed)
                tune = simulate(problem, method_settings(method, seed, 2, overrides), budget)
                study = tune.searcher._ot_study
                trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                good, _ = _split_trials(study, trials, default_gamma(len(trials)))
                final = {
                    t.number: problem.loss(problem.space.sample(optuna.trial.FixedTrial(t.params)), MAX_EPOCHS)
                    for t in trials
                }
                truly = set(sorted(final, key=final.get)[: len(good)])
                complete = sum(t.state == TrialState.COMPLETE for t in good)
                rows.append((len(trials), len(good), complete, len(truly & {t.number for t in good}) / len(good)))
            mean = [statistics.mean(r[i] for r in rows) for i in range(4)]
            print(
                f"{problem_name:<11}{method:<14}{mean[0]:>8.1f}{mean[1]:>6.1f}{mean[2]:>18.1f}{mean[3]:>11.0%}"
                f"{mean[1] / mean[0]:>8.0%}"
            )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """--set key=value for the methods' sweep settings (not random's), typed like SweepSettings."""
    types = {f.name: f.type for f in dataclasses.fields(SweepSettings)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(f"--set {pair}: unknown sweep setting; valid: {sorted(types)}")
        out[key] = {"int": int, "float": float}.get(str(types[key]), str)(value)
    return out


def efficiency(args: argparse.Namespace) -> None:
    out = Path(args.out)
    started = time.time()
    runs = run_all(args, parse_overrides(args.set))
    (out / "efficiency.json").write_text(json.dumps({"args": vars(args), "runs": runs}, indent=0))
    report(runs, args)
    print(f"{time.time() - started:.0f} s wall; raw: {out / 'efficiency.json'}")


def merge(args: argparse.Namespace) -> None:
    """One table and plot from several `efficiency` outputs (e.g. K=2 and K=8 run side by side)."""
    runs = [run for path in args.inputs for run in json.loads(Path(path).read_text())["runs"]]
    report(runs, args)


def report(runs: list[dict], args: argparse.Namespace) -> None:
    budget = args.full_trials * MAX_EPOCHS
    rows = summarise(runs)
    seeds = len({r["seed"] for r in runs})
    defaults = method_settings("default", 0, 2, parse_overrides(args.set))
    print(
        f"\nbudget {args.full_trials} full trials = {budget} trial-epochs ({budget * MAX_FIDELITY // MAX_EPOCHS} "
        f"fidelity units), {seeds} seeds; default = {describe_settings(defaults)}"
        + (f"; --set {' '.join(args.set)}" if args.set else "")
    )
    print("reach = median budget fraction to reach random search's final best (same seed); <=1/3 = share of seeds")
    print_table(rows, budget)
    print()
    for line in goal_check(rows, "default"):
        print(line)
    figure = Path(args.figure) if args.figure else Path(args.out) / "efficiency.png"
    plot_curves(runs, figure)
    print(f"\ncurves: {figure}")


def describe_settings(settings: SweepSettings) -> str:
    keys = ("searcher", "scheduler", "grace_period", "reduction_factor", "brackets", "n_startup_trials")
    return ", ".join(f"{k}={getattr(settings, k)}" for k in keys)


def overhead(args: argparse.Namespace) -> None:
    """Run the real smoke sweep and split its trial-slot time into steps, per-epoch extras, startup."""
    from gsenet.simulate import simulate_dataset
    from search.sweep import init_ray, new_plan, run_sweep

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
    parser.add_argument("part", choices=("efficiency", "merge", "ray-check", "diagnose", "overhead"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--full-trials", type=int, default=30, help="budget = this many full-length trials")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[2, 8], help="max_concurrent values")
    parser.add_argument("--set", nargs="*", default=[], help="sweep settings for every method but random: key=value")
    parser.add_argument("--figure", default="", help="where to save the plot (default: OUT/efficiency.png)")
    parser.add_argument("--check-methods", nargs="+", default=["default", "random"], choices=list(METHODS))
    parser.add_argument("--check-budget", type=int, default=160, help="ray-check: trial-epochs per sweep")
    parser.add_argument("--check-epochs", type=int, default=12, help="ray-check: epochs of a full trial")
    parser.add_argument("--inputs", nargs="+", default=[], help="merge: efficiency.json files")
    parser.add_argument("--diag-seeds", type=int, default=5, help="diagnose: sweeps per method for the TPE split")
    parser.add_argument("--diag-configs", type=int, default=2000, help="diagnose: random configs per problem")
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="gsenet-bench-"))
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    {"efficiency": efficiency, "merge": merge, "ray-check": ray_check, "diagnose": diagnose, "overhead": overhead}[
        args.part
    ](args)


if __name__ == "__main__":
    main()
