"""The just-in-time report made when a node is preempted carries the sweep's metric (fast: no Ray).

Tune rejects a report without the searched metric (default val_si_sdr); the preemption report
repeats the last completed epoch's validation numbers, and survives a restart in the checkpoint."""

from __future__ import annotations

import dataclasses
import math

import torch

from gsenet.config import ExperimentConfig
from gsenet.train import Progress, _preemption_metrics


def _scheduler():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


def test_preemption_report_repeats_the_last_epochs_validation_metrics():
    progress = Progress(step=7, epoch=3, batch=1, best_val_loss=0.4)
    progress.last_val = {"val_loss": 0.5, "val_si_sdr": 7.25, "val_pesq": 1.9, "val_loss_si_sdr": -7.0}
    restored = Progress.restore(dataclasses.asdict(progress))  # what a restarted worker reads from the checkpoint
    report = _preemption_metrics(restored, _scheduler(), ExperimentConfig())
    assert report["val_si_sdr"] == 7.25 and report["val_pesq"] == 1.9 and report["val_loss"] == 0.5
    assert report["epoch"] == 2 and report["step"] == 7 and report["preemption_checkpoint"] == 1


def test_before_the_first_validation_the_metric_is_present_as_nan():
    report = _preemption_metrics(Progress(step=2), _scheduler(), ExperimentConfig())
    assert math.isnan(report["val_si_sdr"]) and report["epoch"] == 0
