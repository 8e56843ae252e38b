"""A sweep whose data and storage are gs:// (fake-gcs-server on loopback), as on the cluster.

`gsenet search --data gs://... --storage-path gs://...` with trials that each train with two gloo
DDP workers; the MLflow server keeps artifacts in its own (local) artifact store. The driver is
killed by SIGKILL after the first trial finished and the second checkpointed, then resumed from
the state in the bucket:

- sweep.json, the Tune experiment and every trial's checkpoints live in the bucket, nothing under
  the working directory;
- the resume re-runs neither the finished trial nor the second trial's first epoch (it continues
  from its checkpoint in the bucket), and the total stays num_samples;
- each trial trained on two workers and reported once per epoch;
- the registered best model loads from the registry and evaluates (on a local copy of the split)
  to the sweep's reported val_si_sdr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.gcs import gcs_emulator  # noqa: F401  (pytest fixture; before ray_local: Ray inherits its env)
from fixtures.mlflow_server import mlflow_server  # noqa: F401
from fixtures.ray_local import ray_local  # noqa: F401
from fixtures.recordings import make_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # generous: a loaded 2-core box
ROOT = Path(__file__).resolve().parents[2]
BUCKET, NAME, EPOCHS, STEPS, VAL_RECORDINGS = "sweeps", "gcs", 2, 2, 2

SPACE = f"""
description: tiny two-worker trials on gs:// data and storage
fixed:
  train.epochs: {EPOCHS}
  train.steps_per_epoch: {STEPS}
  train.metric_subset: 1
  train.keep_checkpoints: 1
  train.num_workers: 2
  train.cpus_per_worker: 1
  model.width_multiplier: 0.25
  model.dilation_depth: 1
  optim.warmup_steps: 1
  data.segment_seconds: 0.5
  data.batch_size: 1
  data.val_max_recordings: {VAL_RECORDINGS}
sweep:
  metric: val_si_sdr
  num_samples: 2
  max_concurrent: 1
  scheduler: fifo
  searcher: random
  seed: 0
  register_model: gcs-best
parameters:
  optim.lr: {{type: choice, values: [1.0e-3, 3.0e-3]}}
"""


def blob_names(prefix: str) -> list[str]:
    from gsenet.storage import gcs_client

    return [b.name for b in gcs_client().list_blobs(BUCKET, prefix=prefix)]


def children(uri: str, parent_run_id: str) -> dict[str, list]:
    from gsenet import tracking

    runs: dict[str, list] = {}
    for run in tracking.child_runs(uri, parent_run_id):
        runs.setdefault(run.data.tags[tracking.TRIAL_ID_TAG], []).append(run)
    return runs


def wait_for(condition, timeout: float, what: str, driver: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if driver.poll() is not None:
            raise AssertionError(
                f"the sweep driver exited ({driver.returncode}) before {what}:\n{log.read_text()[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)


def second_trial_checkpointed(uri: str) -> bool:
    """One trial finished (MLflow child closed) and the next one's Train run registered a checkpoint."""
    from gsenet.storage import exists_at
    from search.sweep import load_plan

    if not exists_at(f"gs://{BUCKET}/runs/{NAME}/sweep.json"):
        return False
    plan = load_plan(NAME, f"gs://{BUCKET}/runs")
    if not plan.parent_run_id:
        return False
    runs = children(uri, plan.parent_run_id)
    finished = [t for t, rs in runs.items() if rs[0].info.status == "FINISHED"]
    running = [t for t in runs if t not in finished]
    if not finished or not running:
        return False
    snapshot = f"runs/{NAME}/train_runs/{NAME}-{running[0]}/checkpoint_manager_snapshot.json"
    if snapshot not in blob_names(snapshot):
        return False
    from gsenet.storage import gcs_client

    return "checkpoint_dir_name" in gcs_client().bucket(BUCKET).blob(snapshot).download_as_text()


def test_sweep_on_gcs_with_two_worker_trials_resumes_and_registers_a_model(
    gcs_emulator,  # noqa: F811
    ray_local,  # noqa: F811
    mlflow_server,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from gsenet.inference import evaluate_model, load_model, summarize
    from gsenet.storage import upload_directory
    from search.sweep import load_plan, run_sweep

    data = make_dataset(
        tmp_path / "ds", n_per_split={"train": 2, "val": VAL_RECORDINGS, "test": 1}, seconds=1.0, seed=3
    )
    gcs_emulator.create_bucket(BUCKET)
    upload_directory(data, f"gs://{BUCKET}/data")
    (tmp_path / "gcs.yaml").write_text(SPACE)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    command = [
        sys.executable, "-m", "gsenet", "search", "--space", str(tmp_path / "gcs.yaml"),
        "--data", f"gs://{BUCKET}/data", "--storage-path", f"gs://{BUCKET}/runs", "--name", NAME,
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--address", ray_local,
        "--mlflow-uri", mlflow_server.uri, "--optuna-storage", f"sqlite:///{tmp_path / 'optuna.db'}",
        "--progress-every", "600",
    ]  # fmt: skip
    log_path = tmp_path / "driver.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log_path, "wb") as log:
        driver = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(
                lambda: second_trial_checkpointed(mlflow_server.uri),
                600,
                "finished first trial and checkpointed second trial",
                driver,
                log_path,
            )
            driver.send_signal(signal.SIGKILL)
            driver.wait(30)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(30)

    stored = blob_names(f"runs/{NAME}/")
    assert f"runs/{NAME}/sweep.json" in stored
    assert any(n.startswith(f"runs/{NAME}/experiment_state") for n in stored), stored  # Tune's state
    assert any("/checkpoint_" in n and n.endswith("checkpoint.pt") for n in stored), stored
    assert not list(workdir.iterdir()), "nothing of the sweep may land in the working directory"

    plan = load_plan(NAME, f"gs://{BUCKET}/runs")
    capsys.readouterr()
    report = run_sweep(plan, resume=True, address=ray_local, interval_s=600)
    summary = capsys.readouterr().out

    assert len(report.rows) == 2 and {r["state"] for r in report.rows} == {"completed"}
    study = optuna.load_study(study_name=NAME, storage=plan.optuna_storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2  # the finished trial was not re-run
    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    runs = children(mlflow_server.uri, plan.parent_run_id)
    assert len(runs) == 2
    for trial_id, (run, *extra) in runs.items():
        assert not extra, f"trial {trial_id} opened a second MLflow run on resume"
        # once per epoch (rank 0 only); the resumed trial continued from its epoch-1 checkpoint in the
        # bucket, so epoch 1 was trained once (epoch 2 may have been logged before the kill, then redone)
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_si_sdr"))
        assert sorted(set(steps)) == [STEPS * e for e in range(1, EPOCHS + 1)], (trial_id, steps)
        assert steps.count(STEPS) == 1, (trial_id, steps)
        system = client.download_artifacts(run.info.run_id, "system.json", str(tmp_path / trial_id))
        assert json.loads(Path(system).read_text())["world_size"] == 2
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # the server's own artifact store

    model, cfg = load_model("models:/gcs-best@best", tracking_uri=mlflow_server.uri)
    rows = evaluate_model(model, cfg, data, "val", perceptual=False, max_recordings=VAL_RECORDINGS)
    assert summarize(rows)["mean_si_sdr"] == pytest.approx(report.best["val_si_sdr"], abs=0.05)

    # The summary names the best trial's kept checkpoint by its gs:// URI; it is in the bucket, and
    # loads (downloaded) to the same score.
    best = report.best["checkpoint"]
    prefix = f"gs://{BUCKET}/runs/{NAME}/train_runs/{NAME}-{report.best['trial_id']}/checkpoint_"
    assert best.startswith(prefix), best
    assert f"Best checkpoint: {best}\n" in summary, summary
    assert f"{best.removeprefix(f'gs://{BUCKET}/')}/checkpoint.pt" in blob_names(best.removeprefix(f"gs://{BUCKET}/"))
    monkeypatch.setenv("GSENET_CACHE_DIR", str(tmp_path / "cache"))  # where load_model downloads it
    model, cfg = load_model(best)
    rows = evaluate_model(model, cfg, data, "val", perceptual=False, max_recordings=VAL_RECORDINGS)
    assert summarize(rows)["mean_si_sdr"] == pytest.approx(report.best["val_si_sdr"], abs=0.05)

    # The trial timeline lives beside sweep.json in the bucket, across the kill: both trials start and end.
    from gsenet.storage import gcs_client

    timeline = json.loads(gcs_client().bucket(BUCKET).blob(f"runs/{NAME}/trial_timeline.json").download_as_text())
    ended = {e["trial"] for e in timeline if e["event"] == "end"}
    assert ended == {r["trial_id"] for r in report.rows}, timeline


def test_a_checkpoint_in_the_bucket_is_named_only_when_complete_and_loads(
    gcs_emulator,  # noqa: F811
    mlflow_server,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """What the summary's "Best checkpoint" rests on, without a sweep: Ray's bucket-relative path
    on a GCS filesystem becomes a gs:// URI, checked against the manifest in the bucket; a best
    trial that logged no model is registered from that checkpoint."""
    import torch
    from mlflow.tracking import MlflowClient

    from gsenet import tracking
    from gsenet.config import ExperimentConfig, apply_overrides, to_dict
    from gsenet.load import load_model
    from gsenet.model import GSENet
    from gsenet.storage import gcs_client, open_storage_filesystem, upload_directory
    from gsenet.train import save_checkpoint
    from search.report import SweepReport, register_best, valid_checkpoint

    cfg = apply_overrides(ExperimentConfig(), {"model.widths": [4, 4, 8, 8, 8, 8], "model.dilation_depth": 1})
    torch.manual_seed(0)
    model = GSENet(cfg.model)
    save_checkpoint(tmp_path / "ckpt", {"model": model.state_dict(), "config": to_dict(cfg)}, cfg)
    gcs_emulator.create_bucket("checks")
    for name in ("whole", "truncated", "unfinished"):
        upload_directory(tmp_path / "ckpt", f"gs://checks/run/{name}")
    bucket = gcs_client().bucket("checks")
    bucket.blob("run/truncated/checkpoint.pt").upload_from_string(b"cut short")
    bucket.blob("run/unfinished/manifest.json").delete()
    filesystem, _ = open_storage_filesystem("gs://checks")

    assert valid_checkpoint("checks/run/whole", filesystem) == "gs://checks/run/whole"
    assert valid_checkpoint("checks/run/truncated", filesystem) == ""
    assert valid_checkpoint("checks/run/unfinished", filesystem) == ""
    assert valid_checkpoint("checks/run/gone", filesystem) == ""
    monkeypatch.setenv("GSENET_CACHE_DIR", str(tmp_path / "cache"))
    loaded, loaded_cfg = load_model("gs://checks/run/whole")
    assert loaded_cfg == cfg
    x = torch.randn(1, 4000)
    with torch.no_grad():
        expected = model.eval()(x, x)
        assert torch.equal(loaded(x, x), expected)

    parent = tracking.start_parent_run(mlflow_server.uri, "gsenet", "from-bucket", {}, "")
    client = MlflowClient(mlflow_server.uri)
    child = client.create_run(
        client.get_run(parent).info.experiment_id,
        run_name="trial-without-a-model",
        tags={tracking.PARENT_TAG: parent, tracking.TRIAL_ID_TAG: "t1"},
    )
    best = {"trial_id": "t1", "val_si_sdr": 1.0, "checkpoint": "gs://checks/run/whole"}
    report = SweepReport("from-bucket", "val_si_sdr", "max", [best], best)
    register_best(report, mlflow_server.uri, parent, "from-bucket")
    assert report.model_uri == "models:/from-bucket@best" and best["mlflow_run_id"] == child.info.run_id
    registered, _ = load_model(report.model_uri, tracking_uri=mlflow_server.uri)
    with torch.no_grad():
        assert torch.equal(registered(x, x), expected)
