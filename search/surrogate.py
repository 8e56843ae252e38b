"""A cheap stand-in for GSENet training: learning curves with GSENet-like shape, no torch.

Used by the sweep tests (to exercise Tune/Optuna/ASHA fast) and by benchmarks/search_efficiency.py.
It is NOT the model: it is a deterministic function of (params, epoch, seed) built so that the
search problem looks like GSENet's. The validation loss decays exponentially to a floor:

    val_loss(e) = floor + (start - floor) * exp(-e / tau) + noise

- wider models (width_multiplier x widths) reach a lower floor but converge more slowly, so
  curves cross and an early rung does not simply rank final quality (what makes ASHA non-trivial);
- the dilation depth has an optimum around 2-3 (receptive field vs. optimisation);
- the learning rate has an optimum near 1e-3: lower converges slowly, higher plateaus higher;
- an SI-SDR loss weight helps a little up to ~0.3.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from dataclasses import dataclass
from typing import Any

PAPER_WIDTH_SUM = 16 + 32 + 48 + 48 + 96 + 96


def curve_point(params: dict[str, Any], epoch: int, seed: int = 0) -> float:
    """Surrogate validation loss after `epoch` epochs (1-based) of a trial with `params`."""
    widths = params.get("model.widths") or (16, 32, 48, 48, 96, 96)
    capacity = float(params.get("model.width_multiplier", 1.0)) * sum(widths) / PAPER_WIDTH_SUM
    depth = float(params.get("model.dilation_depth", 2))
    lr = float(params.get("optim.lr", 1e-3))
    si_sdr = float(params.get("loss.si_sdr", 0.0))
    log_lr = math.log10(lr) + 3.0  # 0 at lr = 1e-3
    floor = (
        0.30
        + 0.12 / math.sqrt(capacity)
        + 0.03 * (depth - 2.5) ** 2
        + 0.10 * max(log_lr, 0.0) ** 2 * 4  # too high a lr plateaus high
        + 0.02 * min(log_lr, 0.0) ** 2
        - 0.03 * min(si_sdr, 0.3) / 0.3
    )
    tau = 2.0 * (0.6 + 0.6 * capacity) * 10 ** (-0.5 * log_lr)  # epochs to 1/e
    start = 1.2
    key = f"{seed}|{sorted(params.items())}|{epoch}".encode()
    noise = random.Random(zlib.crc32(key)).gauss(0.0, 0.004)
    return floor + (start - floor) * math.exp(-epoch / tau) + noise


def surrogate_trial(config: dict[str, Any], ctx: Any = None, epoch_seconds: float = 0.0) -> None:
    """A Tune function trainable reporting surrogate epochs (the sweep's `trial_fn` in tests)."""
    from ray import tune

    epochs = int(getattr(ctx, "max_epochs", 0) or config.get("train.epochs", 10))
    seed = int(getattr(ctx, "seed", 0) or 0)
    for epoch in range(1, epochs + 1):
        if epoch_seconds:
            time.sleep(epoch_seconds)
        loss = curve_point(config, epoch, seed)
        tune.report({"epoch": epoch, "val_loss": loss, "train_loss": loss * 0.9, "val_si_sdr": 20 * (1 - loss)})


def paced_surrogate(epoch_seconds: float):
    """surrogate_trial taking `epoch_seconds` per epoch, so trials overlap as real ones do."""

    def paced_surrogate_trial(config: dict[str, Any], ctx: Any = None) -> None:
        surrogate_trial(config, ctx, epoch_seconds=epoch_seconds)

    return paced_surrogate_trial


# ----------------------------------------------------------------------------------------------
# Multi-fidelity Hartmann functions (the mf-prior-bench `mfh3_*` / `mfh6_*` benchmarks)
# ----------------------------------------------------------------------------------------------
# Hartmann 3-D and 6-D (Dixon & Szegő; https://www.sfu.ca/~ssurjano/hart3.html, hart6.html) made
# multi-fidelity as in Kandasamy et al. 2017 and mf-prior-bench: at fidelity z in 1..100, with
# s = log(z) / log(100), the weights become alpha - bias * (1 - s) (which flattens, and for a large
# bias reorders, the landscape) and half-normal noise of scale noise * (1 - s) is added. At z = 100
# this is the exact Hartmann function (global minimum -3.86278 in 3-D, -3.32237 in 6-D). mf-prior-bench
# itself is not a dependency: it pins numpy < 2 (tests/test_searcher.py checks these values against it).
MAX_FIDELITY = 100
HARTMANN_ALPHA = (1.0, 1.2, 3.0, 3.2)
HARTMANN_A = {
    3: ((3.0, 10.0, 30.0), (0.1, 10.0, 35.0), (3.0, 10.0, 30.0), (0.1, 10.0, 35.0)),
    6: (
        (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
        (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
        (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
        (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
    ),
}
HARTMANN_P = {  # x 1e-4
    3: ((3689, 1170, 2673), (4699, 4387, 7470), (1091, 8732, 5547), (381, 5743, 8828)),
    6: (
        (1312, 1696, 5569, 124, 8283, 5886),
        (2329, 4135, 8307, 3736, 1004, 9991),
        (2348, 1451, 3522, 2883, 3047, 6650),
        (4047, 8828, 8732, 5743, 1091, 381),
    ),
}
HARTMANN_MINIMUM = {3: -3.86278, 6: -3.32237}
# name: (dimensions, bias, noise), the presets of mf-prior-bench
MF_HARTMANN = {
    "mfh3_good": (3, 2.5, 2.0),
    "mfh3_bad": (3, 3.5, 4.0),
    "mfh6_good": (6, 2.5, 2.0),
    "mfh6_bad": (6, 3.5, 4.0),
}


@dataclass(frozen=True)
class MFHartmann:
    """One multi-fidelity Hartmann problem; `seed` only changes the noise (as in mf-prior-bench)."""

    dims: int
    bias: float
    noise: float
    seed: int = 0

    @classmethod
    def named(cls, name: str, seed: int = 0) -> MFHartmann:
        if name not in MF_HARTMANN:
            raise ValueError(f"unknown multi-fidelity Hartmann benchmark {name!r}; use one of {sorted(MF_HARTMANN)}")
        return cls(*MF_HARTMANN[name], seed=seed)

    def keys(self) -> list[str]:
        return [f"X_{i}" for i in range(self.dims)]

    def noiseless(self, xs: tuple[float, ...], fidelity: int) -> float:
        flat = 1.0 - math.log(fidelity) / math.log(MAX_FIDELITY)
        total = 0.0
        for alpha, a_row, p_row in zip(HARTMANN_ALPHA, HARTMANN_A[self.dims], HARTMANN_P[self.dims], strict=True):
            inner = sum(a * (x - 1e-4 * p) ** 2 for a, x, p in zip(a_row, xs, p_row, strict=True))
            total += (alpha - self.bias * flat) * math.exp(-inner)
        return -total

    def error(self, params: dict[str, float], fidelity: int) -> float:
        """The value to minimise at `fidelity` (1..MAX_FIDELITY); deterministic per (seed, params, z)."""
        if not 1 <= fidelity <= MAX_FIDELITY:
            raise ValueError(f"fidelity must be in 1..{MAX_FIDELITY}, got {fidelity}")
        xs = tuple(float(params[k]) for k in self.keys())
        flat = 1.0 - math.log(fidelity) / math.log(MAX_FIDELITY)
        draw = random.Random(zlib.crc32(f"{self.seed}|{fidelity}|{xs}".encode())).gauss(0.0, 1.0)
        return self.noiseless(xs, fidelity) + abs(draw) * self.noise * flat
