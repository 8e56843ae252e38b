"""Shared test settings. Service fixtures (Ray, MLflow server, GCS emulator) live in tests/fixtures/."""

import os

import torch

# Two cores in CI: keep torch from oversubscribing them while Ray workers also run.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
