"""The MLflow UI in a real browser (headless Chromium) after a smoke sweep against a real MLflow server.

What a user comparing trials must see: the experiment opens in its model-training mode with the
trials' short names, a trial's page shows its searched params and `val_si_sdr`, its artifacts hold
the audio examples, and the registry shows the `best` alias. Screenshots of each page are saved in
the test's folder. Skipped (with the reason) only where no Chromium is installed
(`apt-get install chromium`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.mlflow_server import mlflow_server  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def browse(url: str, screenshot: Path) -> str:
    """The page's DOM after its JavaScript ran (virtual time), and a screenshot of it."""
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1600,1000"]
    common += ["--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=180, check=False)
    done = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=True)
    return done.stdout


def sweep_name(output: str) -> str:
    return output.split("Sweep ", 1)[1].split(":", 1)[0]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_trials_are_comparable_in_the_mlflow_ui(mlflow_server, tmp_path):  # noqa: F811
    from mlflow import MlflowClient

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    sweep = subprocess.run(
        [sys.executable, "-m", "gsenet", "search", "--smoke-test", "--mlflow-uri", mlflow_server.uri],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-6000:]
    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("gsenet")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("gsenet.trial_id")]
    assert len(trials) == 3
    trial = max(trials, key=lambda r: r.data.metrics.get("val_si_sdr", float("-inf")))
    base = f"{mlflow_server.uri}/#/experiments/{experiment.experiment_id}"
    training_mode = "?workflowType=machine_learning"  # what gsenet prints; a fresh browser opens GenAI otherwise

    page = browse(base + training_mode, tmp_path / "experiment.png")
    assert "gsenet" in page and "Model training" in page and sweep_name(sweep.stdout)[:12] in page
    page = browse(f"{base}/runs/{trial.info.run_id}{training_mode}", tmp_path / "trial.png")
    assert trial.info.run_name in page  # the short name: trial id + what was sampled
    assert trial.info.run_name.split()[1].startswith("w")  # e.g. "e1ccc2ff w1 d2 si0.27 lr0.0008"
    for text in ("val_si_sdr", "model.width_multiplier", "optim.lr"):
        assert text in page, text
    page = browse(f"{base}/runs/{trial.info.run_id}/artifacts{training_mode}", tmp_path / "artifacts.png")
    for text in ("audio", "config.yaml"):
        assert text in page, text
    page = browse(f"{mlflow_server.uri}/#/models/gsenet-smoke{training_mode}", tmp_path / "registry.png")
    assert "best" in page
    shots = sorted(p.name for p in tmp_path.glob("*.png") if p.stat().st_size > 0)
    assert shots == ["artifacts.png", "experiment.png", "registry.png", "trial.png"]
    print(f"screenshots in {tmp_path}")
