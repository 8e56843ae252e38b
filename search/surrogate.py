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


def surrogate_trial(config: dict[str, Any], ctx: Any = None) -> None:
    """A Tune function trainable reporting surrogate epochs (the sweep's `trial_fn` in tests)."""
    from ray import tune

    epochs = int(getattr(ctx, "max_epochs", 0) or config.get("train.epochs", 10))
    seconds = float(getattr(ctx, "epoch_seconds", 0.0) or 0.0)
    seed = int(getattr(ctx, "seed", 0) or 0)
    for epoch in range(1, epochs + 1):
        if seconds:
            time.sleep(seconds)
        loss = curve_point(config, epoch, seed)
        tune.report({"epoch": epoch, "val_loss": loss, "train_loss": loss * 0.9, "val_si_sdr": 20 * (1 - loss)})
