"""The Optuna searcher tells ASHA-stopped trials as PRUNED (not COMPLETE with a truncated score).

Driven directly through the Searcher interface Tune uses (suggest / on_trial_result /
on_trial_complete), against a real SQLite Optuna study; the Tune + ASHA path is in
tests/integration/test_pruning.py.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from search.searcher import make_searcher
from search.space import load_space
from search.surrogate import HARTMANN_MINIMUM, MAX_FIDELITY, MFHartmann
from search.sweep import make_scheduler


def test_stopped_trials_are_pruned_full_ones_complete_errors_fail(tmp_path):
    space = load_space("smoke")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = make_searcher(
        space, space.settings(metric="val_loss"), max_epochs=3, storage_url=storage, study_name="s"
    )
    for trial_id in ("full", "stopped", "stopped_at_first", "crashed"):
        assert set(searcher.suggest(trial_id)) == {p.key for p in space.parameters}
    for epoch, loss in ((1, 0.9), (2, 0.7)):
        searcher.on_trial_result("full", {"epoch": epoch, "val_loss": loss})
    searcher.on_trial_complete("full", {"epoch": 3, "val_loss": 0.5})  # Tune's last result comes only here
    searcher.on_trial_result("stopped", {"epoch": 1, "val_loss": 0.8})
    searcher.on_trial_complete("stopped", {"epoch": 2, "val_loss": 0.75})
    searcher.on_trial_complete("stopped_at_first", {"epoch": 1, "val_loss": 0.95})
    searcher.on_trial_result("crashed", {"epoch": 1, "val_loss": 0.6})
    searcher.on_trial_complete("crashed", {"epoch": 1, "val_loss": 0.6}, error=True)

    study = optuna.load_study(study_name="s", storage=storage)
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert by_id["full"].state == TrialState.COMPLETE and by_id["full"].value == 0.5
    assert by_id["full"].intermediate_values == {1: 0.9, 2: 0.7, 3: 0.5}
    assert by_id["stopped"].state == TrialState.PRUNED
    assert by_id["stopped"].intermediate_values == {1: 0.8, 2: 0.75}
    assert by_id["stopped_at_first"].state == TrialState.PRUNED
    assert by_id["crashed"].state == TrialState.FAIL
    # Ray's own OptunaSearch would have told "stopped" as COMPLETE with 0.75.
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 1


def test_resumed_history_and_seeded_suggestions(tmp_path):
    space = load_space("smoke")
    settings = space.settings(seed=3, metric="val_loss")
    a = make_searcher(space, settings, max_epochs=2)
    b = make_searcher(space, settings, max_epochs=2)
    assert a.suggest("t1") == b.suggest("t1")  # seeded
    a.on_trial_result("t1", {"epoch": 1, "val_loss": 0.9})
    a.save(str(tmp_path / "searcher.pkl"))
    restored = make_searcher(space, settings, max_epochs=2)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("t1", {"epoch": 2, "val_loss": 0.4})
    (trial,) = restored._ot_study.trials
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {1: 0.9, 2: 0.4}


def test_mf_hartmann_matches_mf_prior_bench():
    """Noiseless values at several fidelities equal mf-prior-bench 1.10.0's (recorded by
    benchmarks/mfhartmann_reference.py); the noise has the half-normal mean and sd it records."""
    reference = json.loads((Path(__file__).parent / "fixtures" / "mfhartmann_reference.json").read_text())
    for name, ref in reference["benchmarks"].items():
        fn = MFHartmann.named(name, seed=1)
        assert (fn.bias, fn.noise) == (ref["bias"], ref["noise"])
        for config, values in zip(ref["configs"], ref["noiseless"], strict=True):
            xs = tuple(config[k] for k in fn.keys())
            mine = [fn.noiseless(xs, z) for z in ref["fidelities"]]
            assert mine == pytest.approx(values, abs=1e-12)
            assert fn.error(config, MAX_FIDELITY) == pytest.approx(values[-1], abs=1e-12)  # no noise at z = 100
        rng = random.Random(5)
        for z, stats in ref["noise_stats"].items():
            configs = [{k: rng.random() for k in fn.keys()} for _ in range(2000)]
            diffs = [fn.error(c, int(z)) - fn.noiseless(tuple(c.values()), int(z)) for c in configs]
            scale = fn.noise * (1 - math.log(int(z)) / math.log(MAX_FIDELITY))  # half-normal |N(0, scale^2)|
            mean, sd = statistics.mean(diffs), statistics.pstdev(diffs)
            assert mean == pytest.approx(scale * math.sqrt(2 / math.pi), abs=4 * sd / math.sqrt(len(diffs)))
            assert sd == pytest.approx(scale * math.sqrt(1 - 2 / math.pi), rel=0.1)
            both = 4 * math.hypot(sd / math.sqrt(len(diffs)), stats["sd"] / math.sqrt(stats["n"]))
            assert mean == pytest.approx(stats["mean"], abs=both)
        assert fn.error(dict(zip(fn.keys(), ref["configs"][-1].values(), strict=True)), 100) == pytest.approx(
            HARTMANN_MINIMUM[fn.dims], abs=1e-5
        )  # the last reference config is the global optimum
    with pytest.raises(ValueError, match="fidelity must be in 1..100"):
        MFHartmann.named("mfh3_good").error({"X_0": 0.5, "X_1": 0.5, "X_2": 0.5}, 0)


def rungs(scheduler) -> list[list[int]]:
    return [sorted(int(milestone) for milestone, _ in bracket._rungs) for bracket in scheduler._brackets]


def test_scheduler_rungs_follow_grace_period_reduction_factor_and_brackets():
    """ASHA bracket k stops trials first at grace x rf^k epochs (asynchronous HyperBand for k > 0)."""
    space = load_space("default")
    for grace, factor, brackets, max_epochs in ((2, 3, 1, 20), (4, 3, 2, 20), (1, 2, 3, 8), (5, 2, 2, 20)):
        settings = space.settings(grace_period=grace, reduction_factor=factor, brackets=brackets)
        expected = [
            [grace * factor**j for j in range(k, 10) if grace * factor**j <= max_epochs] for k in range(brackets)
        ]
        assert rungs(make_scheduler(settings, max_epochs)) == expected
    assert type(make_scheduler(space.settings(scheduler="fifo"), 20)).__name__ == "FIFOScheduler"


class Trial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def test_asha_stops_the_worse_trials_at_a_rung_and_never_before_its_bracket_starts():
    space = load_space("default")
    settings = space.settings(metric="val_loss", grace_period=2, reduction_factor=2, brackets=1)
    asha = make_scheduler(settings, max_epochs=8)
    decisions = {}
    for name, loss in (("a", 0.5), ("b", 0.4), ("c", 0.9), ("d", 0.3)):
        trial = Trial(name)
        asha.on_trial_add(None, trial)
        assert asha.on_trial_result(None, trial, {"epoch": 1, "val_loss": 10.0}) == TrialScheduler.CONTINUE
        decisions[name] = asha.on_trial_result(None, trial, {"epoch": 2, "val_loss": loss})
    # Each is compared with the median of those already at the rung: a (first) and b, d (better) go on.
    assert decisions == {"a": "CONTINUE", "b": "CONTINUE", "c": "STOP", "d": "CONTINUE"}

    hyperband = make_scheduler(space.settings(metric="val_loss", grace_period=2, reduction_factor=2, brackets=2), 8)
    np.random.seed(0)
    late = []
    for i in range(40):
        trial = Trial(f"t{i}")
        hyperband.on_trial_add(None, trial)
        if hyperband._trial_info[trial.trial_id] is hyperband._brackets[1]:
            late.append(trial)
    assert 5 < len(late) < 35  # both brackets are used
    for i, trial in enumerate(late):  # bracket 1's first rung is at 4 epochs: epoch 2 never stops
        assert hyperband.on_trial_result(None, trial, {"epoch": 2, "val_loss": 100.0 + i}) == "CONTINUE"


def load_benchmark():
    """benchmarks/search_efficiency.py as a module (benchmarks/ is not a package)."""
    import importlib.util
    import sys

    if "search_efficiency" not in sys.modules:
        path = Path(__file__).parents[1] / "benchmarks" / "search_efficiency.py"
        spec = importlib.util.spec_from_file_location("search_efficiency", path)
        sys.modules["search_efficiency"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["search_efficiency"])
    return sys.modules["search_efficiency"]


def test_benchmark_budget_curves_against_a_plain_reference():
    """search_efficiency's best-so-far curve and "budget to reach" against a direct recomputation."""
    bench = load_benchmark()
    rng = random.Random(0)
    results = [(f"t{i % 7}", rng.choice([3, 20, 20]), rng.random()) for i in range(200)]  # (trial, epoch, value)
    budget = 200
    curve = bench.best_curve(results, 20, budget)
    for fraction, best in zip(bench.GRID, curve, strict=True):
        used = results[: round(fraction * budget)]
        assert best == min((v for _, e, v in used if e >= 20), default=math.inf)
    steps = bench.improvements(results, 20, budget)
    target = sorted(v for _, e, v in results if e >= 20)[5]  # the 6th best full-length value
    first = next(i for i, (_, e, v) in enumerate(results, start=1) if e >= 20 and v <= target)
    assert bench.reach(steps, target) == first / budget
    assert bench.reach(steps, -1.0) == math.inf


def test_plain_loop_spends_the_budget_and_finishes_what_asha_does_not_stop():
    """The benchmark's Tune stand-in: K trials at a time, every epoch counted once, Optuna told
    COMPLETE exactly for the trials that ran all epochs and PRUNED for the ones ASHA stopped."""
    bench = load_benchmark()
    problem = bench.make_problem("mfh3_good", seed=0, max_epochs=8)
    settings = bench.method_settings("default", seed=0, max_concurrent=3, overrides={"grace_period": 2})
    tune = bench.simulate(problem, settings, budget=120)
    assert len(tune.results) == 120 and len(tune.running) <= 3
    reached = {}
    for trial_id, epoch, _ in tune.results:
        assert epoch == reached.get(trial_id, 0) + 1  # one epoch at a time, none twice
        reached[trial_id] = epoch
    by_id = {t.user_attrs["ray_trial_id"]: t for t in tune.searcher._ot_study.trials}
    for trial_id, epoch in reached.items():
        if trial_id in tune.running:
            continue
        expected = TrialState.COMPLETE if epoch == 8 else TrialState.PRUNED
        assert by_id[trial_id].state == expected, (trial_id, epoch)
    assert any(e < 8 for t, e in reached.items() if t not in tune.running)  # ASHA did stop some
