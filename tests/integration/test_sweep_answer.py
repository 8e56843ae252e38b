"""A test of meaning, not motion: the sweep's answer (and a training run's) checked against
independent computations, on real Ray, a real MLflow server process and simulated data.

- the trial registered as best is the best by an independent evaluation of every trial's model;
- `gsenet evaluate models:/NAME@best` (the command the summary prints) reproduces the reported
  best metric; `gsenet export` and `gsenet enhance` work from that URI and match the model;
- every figure the sweep's summary prints matches what MLflow holds;
- `gsenet train`'s reported val_si_sdr equals an evaluation of its checkpoint on the same split,
  and the model it registers is reachable under the alias the README uses (`@best`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fixtures.mlflow_server import mlflow_server  # noqa: F401  (pytest fixture)
from fixtures.ray_local import ray_local  # noqa: F401
from fixtures.recordings import make_dataset
from fixtures.sweeps import sweep_plan
from mlflow.tracking import MlflowClient

from gsenet import tracking
from gsenet.inference import enhance_arrays, evaluate_model, load_model, summarize
from gsenet.tracking import logged_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
VAL_RECORDINGS = 2
TOLERANCE_DB = 0.05

# Learning rates ~0 (the untrained model) beside working ones: trials of clearly different quality.
SPACE = f"""
description: trials of clearly different true quality
fixed:
  train.epochs: 2
  train.steps_per_epoch: 4
  train.metric_subset: 1
  train.keep_checkpoints: 1
  train.log_every: 4
  model.widths: [4, 8, 8, 8, 16, 16]
  model.dilation_depth: 1
  optim.warmup_steps: 1
  data.segment_seconds: 0.5
  data.batch_size: 2
  data.val_max_recordings: {VAL_RECORDINGS}
sweep:
  metric: val_si_sdr
  num_samples: 3
  max_concurrent: 2  # as real sweeps run: trials overlap (and their start-up costs)
  scheduler: fifo
  searcher: random
  seed: 0
  register_model: answer-best
parameters:
  optim.lr: {{type: choice, values: [1.0e-9, 3.0e-3, 1.0e-2]}}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root / "ds", n_per_split={"train": 3, "val": VAL_RECORDINGS, "test": 1}, seconds=1.5, seed=5)


def val_si_sdr(model_source: str, data: Path, uri: str) -> float:
    """The independent figure: `gsenet evaluate`'s own functions on the validation split."""
    model, cfg = load_model(model_source, tracking_uri=uri)
    rows = evaluate_model(model, cfg, data, "val", perceptual=False, max_recordings=VAL_RECORDINGS)
    return summarize(rows)["mean_si_sdr"]


def output_level_db(model_source: str, data: Path, uri: str) -> float:
    """Median over the validation recordings of 20 log10(rms(enhanced) / rms(target)), read with
    soundfile and computed in NumPy (0 dB: the model speaks at its target's level)."""
    model, _ = load_model(model_source, tracking_uri=uri)
    levels = []
    for folder in sorted(p for p in (data / "val").iterdir() if p.is_dir())[:VAL_RECORDINGS]:
        beam, ref, target = (
            sf.read(folder / f"{n}.wav", dtype="float64")[0] for n in ("channel_1", "channel_2", "ground_truth")
        )
        out = enhance_arrays(model, beam, ref).astype(np.float64)
        levels.append(10 * np.log10(np.mean(out**2) / np.mean(target**2)))
    return float(np.median(levels))


def run_printed(command: str, cwd: Path) -> str:
    """Run a command line exactly as printed (absolute executables, no venv activation)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MLFLOW_TRACKING_URI")}
    env["PATH"] = "/usr/bin:/bin"  # nothing from an activated venv
    done = subprocess.run(shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def sweep(ray_local, mlflow_server, dataset, tmp_path_factory):  # noqa: F811
    import contextlib
    import io

    from search.sweep import run_sweep

    folder = tmp_path_factory.mktemp("sweep")
    plan = sweep_plan(SPACE, name="answer", folder=folder, dataset=dataset, mlflow_uri=mlflow_server.uri)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report = run_sweep(plan, address=ray_local, interval_s=600)
    return plan, report, printed.getvalue(), folder


def test_the_registered_best_is_the_best_by_an_independent_evaluation(sweep, mlflow_server, dataset):  # noqa: F811
    plan, report, _, _ = sweep
    assert [r["state"] for r in report.rows] == ["completed"] * 3
    learning_rates = {r["param.optim.lr"] for r in report.rows}
    assert len(learning_rates) >= 2, f"the sampler drew one learning rate only: {learning_rates}"
    runs = {r.data.tags[tracking.TRIAL_ID_TAG]: r for r in tracking.child_runs(mlflow_server.uri, plan.parent_run_id)}
    independent = {}
    for row in report.rows:
        model = logged_model(mlflow_server.uri, runs[row["trial_id"]].info.run_id)
        assert model is not None, f"trial {row['trial_id']} logged no best_model"
        independent[row["trial_id"]] = val_si_sdr(f"models:/{model.model_id}", dataset, mlflow_server.uri)
        # what the sweep ranked this trial by is the true SI-SDR of the model it kept
        assert row["val_si_sdr"] == pytest.approx(independent[row["trial_id"]], abs=TOLERANCE_DB), row["trial_id"]
    best_by_evaluation = max(independent, key=independent.get)
    assert report.best["trial_id"] == best_by_evaluation, independent
    spread = max(independent.values()) - min(independent.values())
    assert spread > 0.5, f"trials not clearly different ({independent}): the test would not show a ranking"

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    version = client.get_model_version_by_alias("answer-best", "best")
    assert version.run_id == runs[best_by_evaluation].info.run_id
    assert report.model_uri == "models:/answer-best@best"


def test_the_printed_evaluate_command_reproduces_the_reported_best(sweep, mlflow_server):  # noqa: F811
    _, report, printed, folder = sweep
    command = next(line.split(":", 1)[1].strip() for line in printed.splitlines() if "re-score it:" in line)
    assert "models:/answer-best@best" in command and " --split val" in command
    output = run_printed(command, cwd=folder)
    mean_line = next(line for line in output.splitlines() if line.startswith("mean"))
    evaluated = float(mean_line.split()[1])  # first column: SI-SDR of the enhanced output
    assert evaluated == pytest.approx(report.best["val_si_sdr"], abs=TOLERANCE_DB)


def test_export_and_enhance_work_from_the_registered_uri(sweep, mlflow_server, dataset, tmp_path):  # noqa: F811
    gsenet = str(Path(sys.executable).with_name("gsenet"))
    uri = "models:/answer-best@best"
    run_printed(
        f"{gsenet} export {uri} {tmp_path / 'exported'} --format torchscript --mlflow-uri {mlflow_server.uri}", tmp_path
    )
    assert (tmp_path / "exported" / "model.ts").is_file() and (tmp_path / "exported" / "model.pt").is_file()
    recording = sorted((dataset / "val").iterdir())[0]
    out = tmp_path / "enhanced.wav"
    run_printed(f"{gsenet} enhance {uri} {recording} {out} --mlflow-uri {mlflow_server.uri}", tmp_path)
    enhanced, _ = sf.read(out, dtype="float32")
    beam, _ = sf.read(recording / "channel_1.wav", dtype="float32")
    ref, _ = sf.read(recording / "channel_2.wav", dtype="float32")
    exported, _ = load_model(tmp_path / "exported")
    expected = enhance_arrays(exported, beam, ref)
    assert enhanced.shape == beam.shape
    np.testing.assert_allclose(enhanced, expected, atol=1e-4)  # the WAV is the model's output (float WAV)


def test_every_figure_in_the_summary_matches_mlflow(sweep, mlflow_server):  # noqa: F811
    plan, report, printed, _ = sweep
    client = MlflowClient(mlflow_server.uri)
    runs = {r.data.tags[tracking.TRIAL_ID_TAG]: r for r in tracking.child_runs(mlflow_server.uri, plan.parent_run_id)}
    for rank, row in enumerate(report.rows, 1):
        history = {m.step: m.value for m in client.get_metric_history(runs[row["trial_id"]].info.run_id, "val_si_sdr")}
        assert row["val_si_sdr"] == pytest.approx(max(history.values()), abs=1e-6)
        # the runs table's best_val_si_sdr column (its last value) is that best, at the epoch it names
        metrics = client.get_run(runs[row["trial_id"]].info.run_id).data.metrics
        assert metrics["best_val_si_sdr"] == pytest.approx(max(history.values()), abs=1e-6)
        epochs = {m.step: m.value for m in client.get_metric_history(runs[row["trial_id"]].info.run_id, "epoch")}
        best_step = max(history, key=lambda k: (history[k], -k))
        assert metrics["best_epoch"] == epochs[best_step]
        line = next(li for li in printed.splitlines() if li.strip().startswith(f"{rank}. {row['trial_id']}"))
        shown = float(re.search(r"val_si_sdr=(\S+)", line).group(1))
        assert shown == pytest.approx(row["val_si_sdr"], abs=1e-3)
    best = report.best
    run_id = runs[best["trial_id"]].info.run_id
    step = max(
        client.get_metric_history(run_id, "val_si_sdr"), key=lambda m: (m.value, -m.step)
    ).step  # the best epoch's step
    at_best = {
        key: next(m.value for m in client.get_metric_history(run_id, key) if m.step == step)
        for key in ("val_si_sdr", "val_si_sdr_improvement", "val_si_sdr_beam")
    }
    line = next(li for li in printed.splitlines() if li.startswith("Best trial:"))
    assert f"SI-SDR {at_best['val_si_sdr']:.2f} dB" in line
    assert f"{at_best['val_si_sdr_improvement']:+.2f} dB over the beamformer" in line
    assert f"(beamformer {at_best['val_si_sdr_beam']:.2f} dB)" in line
    parent = client.get_run(plan.parent_run_id)
    assert parent.data.metrics["best_val_si_sdr"] == pytest.approx(at_best["val_si_sdr"], abs=1e-6)
    assert line in parent.data.tags["mlflow.note.content"]  # the summary is the parent's description
    checkpoint = next(li for li in printed.splitlines() if li.startswith("Best checkpoint:")).split(":", 1)[1].strip()
    assert (Path(checkpoint) / "checkpoint.pt").is_file()  # it exists: Ray kept it (same metric)
    assert val_si_sdr(checkpoint, Path(plan.cli_fixed["data.path"]), mlflow_server.uri) == pytest.approx(
        at_best["val_si_sdr"], abs=TOLERANCE_DB
    )


def test_gsenet_train_reports_what_evaluate_measures(ray_local, mlflow_server, dataset, tmp_path):  # noqa: F811
    overrides = {
        "data.segment_seconds": 0.5, "data.batch_size": 2, "data.val_max_recordings": VAL_RECORDINGS,
        "model.widths": "[4,8,8,8,16,16]", "model.dilation_depth": 1, "optim.lr": 3e-3, "optim.warmup_steps": 1,
        "train.epochs": 2, "train.steps_per_epoch": 4, "train.metric_subset": 1, "train.name": "answer-train",
        "train.storage_path": str(tmp_path / "runs"), "tracking.register_model": "answer-train",
    }  # fmt: skip
    command = [str(Path(sys.executable).with_name("gsenet")), "train", "--data", str(dataset)]
    command += ["--mlflow-uri", mlflow_server.uri] + [f"{k}={v}" for k, v in overrides.items()]
    env = {**os.environ, "RAY_ADDRESS": ray_local}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    reported = float(re.search(r"done: .*SI-SDR (-?[\d.]+) dB", output).group(1))
    latest = re.search(r"latest checkpoint: (\S+)", output).group(1)
    assert val_si_sdr(latest, dataset, mlflow_server.uri) == pytest.approx(reported, abs=0.01)  # printed to 0.01

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    run = client.search_runs(
        [client.get_experiment_by_name("gsenet").experiment_id], filter_string="tags.`mlflow.runName` = 'answer-train'"
    )[0]
    history = client.get_metric_history(run.info.run_id, "val_si_sdr")
    final = max(history, key=lambda m: m.step).value
    assert val_si_sdr(latest, dataset, mlflow_server.uri) == pytest.approx(final, abs=TOLERANCE_DB)
    assert "models:/answer-train@best" in output  # the URI the run prints is the one that works
    best = max(m.value for m in history)
    assert val_si_sdr("models:/answer-train@best", dataset, mlflow_server.uri) == pytest.approx(best, abs=TOLERANCE_DB)
    # The registered model speaks at its target's level (the scale-invariant losses leave it free;
    # `gsenet train` re-levels the models it logs), and MLflow records the gain it applied.
    assert abs(output_level_db("models:/answer-train@best", dataset, mlflow_server.uri)) < 1.0
    assert "best_model_output_gain_db" in client.get_run(run.info.run_id).data.metrics


def test_a_run_without_a_loadable_model_is_refused_not_registered(mlflow_server, tmp_path):  # noqa: F811
    from gsenet.errors import TrackingError
    from gsenet.tracking import get_or_create_experiment, register_model

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    run = client.create_run(get_or_create_experiment(mlflow_server.uri, "gsenet"), run_name="no-model")
    (tmp_path / "checkpoint").mkdir()
    client.log_artifacts(run.info.run_id, str(tmp_path / "checkpoint"), "checkpoint")  # an empty folder
    with pytest.raises(TrackingError, match="logged no 'best_model' model: nothing to register"):
        register_model(mlflow_server.uri, run.info.run_id, "never-registered")
    assert not [m for m in client.search_registered_models() if m.name == "never-registered"]
