"""`gsenet train` as the README types it: from the data's parent folder, `--data data` relative.

A real local Ray (started by the command itself) and the default ./mlruns.db store. Checks what a
new user sees: the run succeeds, every worker line is printed once, no known noise warnings, and
the last lines name the MLflow run and the command that opens it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.recordings import make_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.segment_seconds=0.5",
    "data.batch_size=2",
    "model.widths=[4,4,8,8,8,8]",
    "model.dilation_depth=1",
    "train.epochs=2",
    "train.steps_per_epoch=2",
    "train.metric_subset=1",
    "train.num_workers=1",
]


def test_readme_train_command_with_a_relative_data_path(tmp_path):
    make_dataset(tmp_path / "data", n_per_split=2, seconds=1.0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        env.pop(key, None)
    # The README's line, then overrides that make it tiny; one of them after an option (issue 13).
    command = [sys.executable, "-m", "gsenet", "train", "--data", "data", "model.width_multiplier=0.75"]
    command += ["loss.si_sdr=0.5", "--experiment", "readme", *TINY]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=800)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    for epoch in (1, 2):
        lines = [line for line in output.splitlines() if re.search(rf"\bepoch {epoch} \| step", line)]
        assert len(lines) == 1, lines  # once, not once per logging path
    assert "Add type hints to the `predict` method" not in output
    run_id = re.search(r"MLflow run ([0-9a-f]{32}) in sqlite:///", done.stdout).group(1)
    assert "`gsenet ui`" in done.stdout

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["data.path"] == str(tmp_path / "data")  # made absolute on the driver
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "readme"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
