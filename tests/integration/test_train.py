"""End to end on real services: Ray (local, 2 CPUs), an MLflow server (SQLite) and simulated data.

One tiny training run is shared by the module; a second run is killed mid-way and resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures.mlflow_server import mlflow_server  # noqa: F401
from fixtures.ray_local import ray_local  # noqa: F401
from fixtures.recordings import make_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EPOCHS, STEPS = 3, 6
REGISTERED = "gsenet-it"


def tiny_overrides(data: Path, storage: Path, mlflow_uri: str, name: str) -> dict:
    return {
        "data.path": str(data),
        "data.segment_seconds": 0.5,
        "data.batch_size": 4,
        "model.widths": [4, 4, 8, 8, 8, 8],
        "model.dilation_depth": 1,
        "optim.lr": 3e-4,  # the residual mask starts at the beam: a gentle rate keeps the tiny run improving
        "optim.warmup_steps": 2,
        "train.epochs": EPOCHS,
        "train.steps_per_epoch": STEPS,
        "train.metric_subset": 1,
        "train.log_every": 3,
        "train.storage_path": str(storage),
        "train.name": name,
        "tracking.mlflow_uri": mlflow_uri,
        "tracking.register_model": REGISTERED,
    }


@pytest.fixture(scope="module", autouse=True)
def single_thread_environment():
    """A user's exported OMP_NUM_THREADS=1 (Ray then leaves it alone): workers must still use every
    CPU they were given. Set before the module's Ray starts, so its workers inherit it."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if before is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root / "ds", n_per_split={"train": 3, "val": 2, "test": 2}, seconds=1.5, seed=3)


@pytest.fixture(scope="module")
def trained(ray_local, mlflow_server, dataset, tmp_path_factory):  # noqa: F811
    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.train import fit

    storage = tmp_path_factory.mktemp("runs")
    overrides = tiny_overrides(dataset, storage, mlflow_server.uri, "tiny")
    overrides["train.cpus_per_worker"] = 2  # all of the module's Ray: the worker must use both
    cfg = apply_overrides(ExperimentConfig(), overrides)
    result = fit(cfg)
    return cfg, result


def mlflow_run(uri: str, name: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("gsenet")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`mlflow.runName` = '{name}'")
    assert len(runs) == 1, f"expected one MLflow run named {name}, got {len(runs)}"
    return client, runs[0]


def test_loss_decreases_and_metrics_are_reported(trained, mlflow_server):  # noqa: F811
    cfg, result = trained
    assert result.metrics["epoch"] == EPOCHS and result.metrics["step"] == EPOCHS * STEPS
    for key in ("train_loss", "val_si_sdr", "val_pesq", "val_stoi", "lr", "audio_seconds_per_second"):
        assert np.isfinite(result.metrics[key]), key
    assert len(result.best_checkpoints) == cfg.train.keep_checkpoints  # the best k by val_si_sdr are kept
    client, run = mlflow_run(mlflow_server.uri, "tiny")
    val_loss = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)]
    assert len(val_loss) == EPOCHS and val_loss[-1] < val_loss[0]


def test_worker_uses_its_cpus_and_logs_flops(trained, mlflow_server, tmp_path):  # noqa: F811
    import json

    from gsenet.throughput import training_flops_per_audio_second

    cfg, result = trained
    client, run = mlflow_run(mlflow_server.uri, "tiny")
    system = json.loads(Path(client.download_artifacts(run.info.run_id, "system.json", str(tmp_path))).read_text())
    assert system["torch_threads"] == cfg.train.cpus_per_worker == 2  # despite OMP_NUM_THREADS=1
    assert system["reuse_freed_memory"] is True  # the worker process runs on glibc here
    # What fit() set in this process (0.25 s unless the environment chose) reached the controller and the worker.
    assert system["train_controller_poll_s"] == os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"]
    assert system["matmul_peak_gflops"] > 0
    metrics = result.metrics
    expected = metrics["audio_seconds_per_second"] * training_flops_per_audio_second(cfg.model) / 1e9
    assert metrics["train_gflop_per_second"] == pytest.approx(expected, rel=1e-6)
    peak_fraction = metrics["train_gflop_per_second"] / system["matmul_peak_gflops"]
    assert metrics["matmul_peak_fraction"] == pytest.approx(peak_fraction, rel=1e-6)
    history = client.get_metric_history(run.info.run_id, "matmul_peak_fraction")
    assert len(history) == EPOCHS and all(m.value > 0 for m in history)


def test_run_starts_ray_trains_helpers_but_no_ray_data_actors(trained):
    """gsenet's workers read their own files: Ray Train's Ray Data manager (a process per run) must
    not start. Read from Ray's own actor table, which keeps dead actors. (The autoscaling coordinator
    Ray Train's scaling policy gets or creates is one per cluster, not per run: not checked.)"""
    from ray.util.state import list_actors

    classes = {actor.class_name for actor in list_actors(limit=10_000)}
    assert {"TrainController", "RayTrainWorker", "SynchronizationActor"} <= classes, classes  # the table has the run
    assert "DatasetManager" not in classes, classes


def test_checkpoint_holds_training_state(trained):
    import torch

    _, result = trained
    with result.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / "checkpoint.pt", weights_only=True)
        assert (Path(folder) / "config.yaml").is_file()
    assert state["progress"]["step"] == EPOCHS * STEPS and state["progress"]["epoch"] == EPOCHS + 1
    assert {"model", "optimizer", "scheduler", "config", "best_model"} <= set(state)


def test_mlflow_run_has_params_metrics_audio_and_models(trained, mlflow_server):  # noqa: F811
    import mlflow.pyfunc

    from gsenet.inference import enhance_arrays, load_model
    from gsenet.tracking import download_model

    cfg, _ = trained
    client, run = mlflow_run(mlflow_server.uri, "tiny")
    assert run.info.status == "FINISHED"
    assert run.data.params["model.widths"] == "[4, 4, 8, 8, 8, 8]"
    assert run.data.params["optim.lr"] == "0.0003"
    val_loss = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in val_loss] == [STEPS, 2 * STEPS, 3 * STEPS]
    run_id = run.info.run_id
    top = {f.path for f in client.list_artifacts(run_id)}
    assert {"config.yaml", "system.json", "audio", "data"} <= top
    recording = client.list_artifacts(run_id, "audio")[0].path
    epoch_files = {Path(f.path).name for f in client.list_artifacts(run_id, f"{recording}/epoch_003")}
    assert epoch_files == {"ref.wav", "beam.wav", "enhanced.wav", "target.wav", "spectrograms.png"}
    # The registered best model loads with plain MLflow and enhances audio.
    version = client.get_model_version(REGISTERED, "1")
    assert version.run_id == run_id
    assert client.get_model_version_by_alias(REGISTERED, "best").version == version.version  # models:/NAME@best
    uri = f"models:/{REGISTERED}/{version.version}"
    local = download_model(uri, mlflow_server.uri)  # explicit URI: no global MLflow state in tests
    code = Path(local) / "code" / "gsenet"  # what the model ships of gsenet: its source, not other models
    assert (code / "model.py").is_file() and not (code / "pretrained").exists() and not list(code.rglob("*.pyc"))
    model = mlflow.pyfunc.load_model(str(local))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4000)).astype(np.float32) * 0.1
    out = model.predict({"beam": x, "ref": x})
    assert out.shape == (2, 4000) and np.isfinite(out).all()
    gsenet_model, model_cfg = load_model(uri, tracking_uri=mlflow_server.uri)  # the one loader takes the URI too
    assert model_cfg.widths == cfg.model.widths
    np.testing.assert_allclose(enhance_arrays(gsenet_model, x, x), out, atol=1e-6)


def test_resume_after_kill_continues_from_checkpoint(ray_local, mlflow_server, dataset, tmp_path):  # noqa: F811
    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.train import fit

    storage = tmp_path / "runs"
    overrides = tiny_overrides(dataset, storage, mlflow_server.uri, "killed")
    overrides.pop("tracking.register_model")
    command = [sys.executable, "-m", "gsenet", "train"] + [f"{k}={v}" for k, v in overrides.items()]
    command = [c.replace(" ", "") for c in command]  # lists as [4,4,8,...]
    env = {**os.environ, "RAY_ADDRESS": ray_local}
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    # Ray Train commits a checkpoint by listing it in its snapshot; kill right after the first commit.
    snapshot = storage / "killed" / "checkpoint_manager_snapshot.json"

    def committed() -> bool:
        return snapshot.exists() and f"checkpoint_{STEPS:08d}" in snapshot.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 240
        while not committed() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert committed(), "the first run never committed its epoch-1 checkpoint"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver dies; Ray tears down its workers
        process.wait(30)
    time.sleep(2)
    cfg = apply_overrides(ExperimentConfig(), overrides)
    result = fit(cfg)
    assert result.metrics["step"] == EPOCHS * STEPS
    assert result.metrics["start_step"] > 0 and result.metrics["start_step"] % STEPS == 0
    client, run = mlflow_run(mlflow_server.uri, "killed")  # the same MLflow run continued
    history = client.get_metric_history(run.info.run_id, "epoch")
    # Epochs after the committed checkpoint may show twice (the killed run got further); none is missing.
    assert {int(m.value) for m in history} == set(range(1, EPOCHS + 1))
    assert {m.step for m in history} == {STEPS * e for e in range(1, EPOCHS + 1)}


def test_unreachable_mlflow_is_a_clear_error_before_training(dataset, tmp_path):
    from fixtures.mlflow_server import free_port

    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.errors import TrackingError
    from gsenet.train import build_trainer

    dead = f"http://127.0.0.1:{free_port()}"
    cfg = apply_overrides(ExperimentConfig(), tiny_overrides(dataset, tmp_path / "runs", dead, "dead"))
    with pytest.raises(TrackingError, match="not reachable"):
        build_trainer(cfg)
    assert not (tmp_path / "runs").exists()


def test_non_finite_loss_stops_with_the_step(ray_local, mlflow_server, dataset, tmp_path):  # noqa: F811
    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.errors import TrainingError
    from gsenet.train import fit

    overrides = tiny_overrides(dataset, tmp_path / "runs", mlflow_server.uri, "diverges")
    overrides.update({"optim.lr": 1e30, "optim.warmup_steps": 0, "optim.grad_clip": 0.0, "train.max_failures": 0})
    overrides.pop("tracking.register_model")
    cfg = apply_overrides(ExperimentConfig(), overrides)
    with pytest.raises(TrainingError, match=r"non-finite loss .* at step \d+"):
        fit(cfg)
    _, run = mlflow_run(mlflow_server.uri, "diverges")
    assert run.info.status == "FAILED"
