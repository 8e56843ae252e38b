"""Training faults on real Ray Train runs (local Ray, MLflow's SQLite store, a tiny model):

- a garbled latest checkpoint is refused by its checksum, named, and the run resumes from the
  newest valid one (same for `load_model(<run folder>)`);
- a non-finite loss fails the run at once (no worker-group restarts) and names the recordings of
  the batch.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from fixtures.recordings import make_dataset

from faults.test_checkpoint_files import garble, same_weights
from gsenet.checkpoint import problem
from gsenet.config import ExperimentConfig, apply_overrides

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
STEPS = 3


def tiny(data: Path, root: Path, name: str, **extra) -> ExperimentConfig:
    overrides = {
        "data.path": str(data),
        "data.segment_seconds": 0.5,
        "data.batch_size": 2,
        "data.val_max_recordings": 1,
        "model.widths": [4, 4, 8, 8, 8, 8],
        "model.dilation_depth": 1,
        "optim.warmup_steps": 0,
        "train.epochs": 2,
        "train.steps_per_epoch": STEPS,
        "train.metric_subset": 1,
        "train.log_every": 100,
        "train.keep_checkpoints": 10,
        "train.max_failures": 2,
        "train.storage_path": str(root / "runs"),
        "train.name": name,
        "tracking.mlflow_uri": f"sqlite:///{root / 'mlflow.db'}",
        **extra,
    }
    return apply_overrides(ExperimentConfig(), overrides)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=5)


def test_garbled_latest_checkpoint_is_refused_and_the_run_resumes_from_the_previous_one(
    ray_local,
    dataset,
    tmp_path,
    capfd,
):
    from gsenet.inference import load_model
    from gsenet.train import fit

    fit(tiny(dataset, tmp_path, "garbled"))
    run = tmp_path / "runs" / "garbled"
    assert (run / "checkpoint_00000003").is_dir() and (run / "checkpoint_00000006").is_dir()
    assert not list(run.glob(".staging-*"))  # committed by rename, nothing left half-way
    previous = torch.load(run / "checkpoint_00000003" / "checkpoint.pt", weights_only=True)
    garble(run / "checkpoint_00000006" / "checkpoint.pt")

    model, _ = load_model(run)
    assert same_weights(model, previous["model"])  # not the garbled one's

    capfd.readouterr()
    result = fit(tiny(dataset, tmp_path, "garbled", **{"train.epochs": 3}))
    out = "".join(capfd.readouterr())
    assert "checkpoint_00000006" in out and "sha256" in out  # said by name and why
    assert result.metrics["start_step"] == STEPS  # resumed from the valid checkpoint, not from scratch
    assert result.metrics["step"] == 3 * STEPS and result.metrics["epoch"] == 3
    # The retrained epoch is a new generation: it never overwrites or is confused with the bad one.
    for name in ("checkpoint_00000006_g1", "checkpoint_00000009_g1"):
        assert problem(run / name) is None
    assert problem(run / "checkpoint_00000006") is not None  # kept for inspection, never loaded
    final = torch.load(run / "checkpoint_00000009_g1" / "checkpoint.pt", weights_only=True)
    model, _ = load_model(run)
    assert same_weights(model, final["model"])


def test_a_non_finite_loss_fails_at_once_and_names_the_recordings(ray_local, dataset, tmp_path, capfd):
    from mlflow import MlflowClient

    from gsenet.errors import TrainingError
    from gsenet.train import fit

    cfg = tiny(dataset, tmp_path, "diverges", **{"optim.lr": 1e30})  # step 1 makes the weights overflow
    capfd.readouterr()
    with pytest.raises(TrainingError, match="non-finite loss") as caught:
        fit(cfg)
    message = str(caught.value)
    assert "rec_00" in message and "@" in message  # recording@offset of the batch
    assert "lower optim.lr" in message  # the inputs were fine, so the advice is about the optimiser
    out = "".join(capfd.readouterr())
    # Each attempt is a new worker process (Ray echoes a worker's line on stdout and stderr).
    attempts = {re.search(r"pid=(\d+)", line).group(1) for line in out.splitlines() if "from scratch" in line}
    assert len(attempts) == 1, out[-3000:]  # one attempt, not 1 + train.max_failures
    client = MlflowClient(cfg.tracking.mlflow_uri)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    assert run.info.status == "FAILED"
