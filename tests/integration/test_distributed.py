"""Multi-worker GSENet on a real two-node Ray cluster on loopback (one DDP worker per node, gloo),
laid out as cluster/gcp.yaml lays out a cluster (the head declares TRAIN_DRIVER).

The sharded validation (each rank scores its share, `all_reduce` sums) must give exactly what one
process scoring every recording gives on the same checkpoint, and only rank 0 may log to MLflow.
Rank 1 SIGKILLed mid-epoch: both ranks resume at the mid-epoch checkpoint's step, the epoch's
samples are trained once each, and only rank 0 logs and writes checkpoints (from the ranks' own
`train.trace_dir` logs, MLflow and the checkpoint folders).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fixtures.mlflow_server import mlflow_server  # noqa: F401  (pytest fixture)
from fixtures.ray_cluster import HEAD_IP, running_ray_cluster, wait_for_nodes
from fixtures.recordings import make_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
EPOCHS, STEPS = 2, 3


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[None]:
    """One Ray cluster for the module: a head and a worker node, 1 CPU each (one DDP rank per node)."""
    import ray

    env = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "180"}
    with running_ray_cluster({"TRAIN_DRIVER": 100}, [{"worker_node": 1}], cpus_per_node=1, env=env) as cluster:
        try:
            ray.init(address=cluster.address, _node_ip_address=HEAD_IP, log_to_driver=False)
            wait_for_nodes(2, timeout=300)  # a loaded 2-core box: nodes can take minutes to register
            yield cluster
        finally:
            ray.shutdown()


def single_process_validation(checkpoint_dir: str, data: Path) -> dict[str, float]:
    """The same checkpoint scored by one process over every validation recording (no DDP)."""
    from gsenet.config import from_dict
    from gsenet.data import RecordingDataset
    from gsenet.losses import GSENetLoss
    from gsenet.model import GSENet
    from gsenet.train import validate

    state = torch.load(Path(checkpoint_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = from_dict(state["config"])
    model = GSENet(cfg.model)
    model.load_state_dict(state["model"], strict=True)
    dataset = RecordingDataset(data / "val", cfg.data, cfg.model.sample_rate)
    loss_fn = GSENetLoss(cfg.loss)
    metrics, _ = validate(model.eval(), loss_fn, dataset, cfg, torch.device("cpu"), None, rank=0, world=1)
    return metrics


def test_two_workers_on_two_nodes_validate_like_one_process(two_nodes, mlflow_server, tmp_path):  # noqa: F811
    from mlflow.tracking import MlflowClient

    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.train import fit

    data = make_dataset(tmp_path / "ds", n_per_split={"train": 3, "val": 5, "test": 1}, seconds=1.0, seed=11)
    cfg = apply_overrides(
        ExperimentConfig(),
        {
            "data.path": str(data), "data.segment_seconds": 0.5, "data.batch_size": 2,
            "model.widths": [4, 4, 8, 8, 8, 8], "model.dilation_depth": 1, "optim.lr": 3e-3,
            "train.epochs": EPOCHS, "train.steps_per_epoch": STEPS, "train.metric_subset": 1,
            "train.num_workers": 2, "train.cpus_per_worker": 1, "train.name": "ddp",
            "train.storage_path": str(tmp_path / "runs"), "tracking.mlflow_uri": mlflow_server.uri,
        },
    )  # fmt: skip
    try:
        result = fit(cfg)
    except Exception as exc:
        raise AssertionError(f"{exc}\n\nRay node logs:\n{two_nodes.logs()}") from exc

    reported = result.metrics
    assert reported["epoch"] == EPOCHS and reported["step"] == EPOCHS * STEPS
    alone = single_process_validation(result.checkpoint.path, data)
    summed = [k for k in alone if k.startswith(("val_loss", "val_si_sdr"))]  # the all_reduce'd ones
    assert {"val_loss", "val_si_sdr", "val_si_sdr_beam", "val_si_sdr_improvement"} <= set(summed)
    for key in summed:
        assert reported[key] == pytest.approx(alone[key], abs=1e-5), key

    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("gsenet")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.`mlflow.runName` = 'ddp'")
    history = client.get_metric_history(run.info.run_id, "val_si_sdr")
    assert sorted(m.step for m in history) == [STEPS * e for e in range(1, EPOCHS + 1)]  # once per epoch: rank 0
    system = json.loads(Path(client.download_artifacts(run.info.run_id, "system.json", str(tmp_path))).read_text())
    assert system["world_size"] == 2
    audio = client.list_artifacts(run.info.run_id, "audio")
    assert len(audio) == cfg.train.metric_subset  # examples only from rank 0's share


def train_loop(config: dict) -> None:
    """Tiny DDP run: a few steps of linear regression, then rank 0 reports where every rank ran."""
    import ray
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train import Checkpoint
    from ray.train.torch import prepare_model

    torch.manual_seed(0)
    model = prepare_model(torch.nn.Linear(4, 1))  # DistributedDataParallel over gloo
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(32, 4)
    y = x.sum(dim=1, keepdim=True)
    for _ in range(config["steps"]):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    node_ids = [None] * dist.get_world_size()
    dist.all_gather_object(node_ids, ray.get_runtime_context().get_node_id())
    metrics = {"loss": loss.item(), "world_size": dist.get_world_size(), "worker_nodes": ",".join(node_ids)}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            torch.save(model.module.state_dict(), Path(folder) / "model.pt")
            checkpoint = Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)  # a barrier: every rank calls it


def drive_training(storage_path: str) -> dict:
    """What a trial does on the head: build a TorchTrainer and fit it. Returns where things ran."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"steps": 5},
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="multinode", storage_path=storage_path),
    )
    result = trainer.fit()
    return {
        "driver_node": ray.get_runtime_context().get_node_id(),
        "metrics": dict(result.metrics),
        "has_checkpoint": result.checkpoint is not None,
    }


@pytest.mark.timeout(300)
def test_a_head_pinned_train_driver_spreads_its_ddp_workers_over_both_nodes(two_nodes, tmp_path):
    """The layout of cluster/gcp.yaml: the head declares TRAIN_DRIVER (as `ray start --head
    --resources='{"TRAIN_DRIVER": 100}'` on GCP) and a second node stands for a GPU worker. A Train
    driver pinned with {"TRAIN_DRIVER": 0.01}, as a sweep's trials are, runs on the head while its
    two DDP (gloo) workers span both nodes (a toy model: this is about placement)."""
    import ray
    from ray import cloudpickle

    # Ray workers cannot import this test module: ship its functions by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    nodes = wait_for_nodes(2)
    head = [n["NodeID"] for n in nodes if n["Resources"].get("TRAIN_DRIVER", 0) > 0]
    other = [n["NodeID"] for n in nodes if n["Resources"].get("worker_node", 0) > 0]
    assert len(head) == 1 and len(other) == 1 and head != other
    pinned = ray.remote(num_cpus=0, resources={"TRAIN_DRIVER": 0.01})(drive_training)
    try:
        outcome = ray.get(pinned.remote(str(tmp_path / "runs")), timeout=240)
    except Exception as exc:
        raise AssertionError(f"{exc}\n\nRay node logs:\n{two_nodes.logs()}") from exc

    assert outcome["driver_node"] == head[0], "the Train driver must be pinned to the head by TRAIN_DRIVER"
    metrics = outcome["metrics"]
    assert metrics["world_size"] == 2
    assert sorted(metrics["worker_nodes"].split(",")) == sorted(head + other), "DDP workers must span both nodes"
    assert metrics["loss"] < 100 and outcome["has_checkpoint"]
    assert any((tmp_path / "runs" / "multinode").rglob("model.pt")), "checkpoint not persisted to storage_path"


def read_trace(folder: Path) -> dict[int, list[dict]]:
    """Each rank's `train.trace_dir` log: its events in order, over every attempt."""
    return {
        int(path.stem.removeprefix("rank")): [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted(folder.glob("rank*.jsonl"))
    }


def attempts(events: list[dict]) -> list[list[dict]]:
    """One rank's events split at each worker start (the first run, then each restart)."""
    runs: list[list[dict]] = []
    for event in events:
        if event["event"] == "start":
            runs.append([])
        runs[-1].append(event)
    return runs


def _kill_rank_1_after_a_mid_epoch_checkpoint(snapshot: Path, trace: Path, killed: list, timeout: float = 400) -> None:
    """SIGKILL rank 1's process as soon as Ray has registered the first (mid-epoch) checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if snapshot.is_file() and "checkpoint_dir_name" in snapshot.read_text() and (trace / "rank1.jsonl").is_file():
            pid = json.loads((trace / "rank1.jsonl").read_text().splitlines()[0])["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


@pytest.mark.timeout(900)  # a Train run with a worker-group restart on a busy 2-core box
def test_rank_1_killed_mid_epoch_resumes_both_ranks_and_trains_each_sample_once(two_nodes, mlflow_server, tmp_path):  # noqa: F811
    from mlflow.tracking import MlflowClient

    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.data import SegmentDataset
    from gsenet.train import fit

    data = make_dataset(tmp_path / "ds", n_per_split={"train": 3, "val": 2, "test": 1}, seconds=1.0, seed=13)
    steps, every, world, trace_dir, runs = 12, 3, 2, tmp_path / "trace", tmp_path / "runs"
    cfg = apply_overrides(
        ExperimentConfig(),
        {
            "data.path": str(data), "data.segment_seconds": 0.5, "data.batch_size": 2,
            "model.widths": [4, 4, 8, 8, 8, 8], "model.dilation_depth": 1, "optim.lr": 3e-3,
            "train.epochs": 1, "train.steps_per_epoch": steps, "train.checkpoint_every": every,
            "train.keep_checkpoints": 10, "train.metric_subset": 0, "train.max_failures": 2,
            "train.num_workers": world, "train.cpus_per_worker": 1, "train.name": "killed-rank",
            "train.trace_dir": str(trace_dir), "train.storage_path": str(runs),
            "tracking.mlflow_uri": mlflow_server.uri,
        },
    )  # fmt: skip
    killed: list[int] = []
    snapshot = runs / "killed-rank" / "checkpoint_manager_snapshot.json"
    killer = threading.Thread(
        target=_kill_rank_1_after_a_mid_epoch_checkpoint, args=(snapshot, trace_dir, killed), daemon=True
    )
    killer.start()
    try:
        result = fit(cfg)
    except Exception as exc:
        raise AssertionError(f"{exc}\n\nRay node logs:\n{two_nodes.logs()}") from exc
    killer.join(timeout=30)
    assert killed, "rank 1 was not killed (the run ended before its first checkpoint was registered?)"
    assert result.metrics["step"] == steps and result.metrics["epoch"] == 1

    trace = read_trace(trace_dir)
    assert sorted(trace) == [0, 1]
    first, second = ({r: attempts(trace[r])[i] for r in trace} for i in (0, 1))
    assert all(len(attempts(trace[r])) == 2 for r in trace), "one restart of the whole group, no more"
    assert first[1][0]["pid"] == killed[0]
    # Both ranks resumed at the same step: the mid-epoch checkpoint's (epoch 1, batch = step).
    resumed = {(s[0]["step"], s[0]["epoch"], s[0]["batch"]) for s in second.values()}
    assert len(resumed) == 1, resumed
    ((start, epoch, batch),) = resumed
    assert epoch == 1 and batch == start and 0 < start < steps and start % every == 0, resumed
    assert result.metrics["start_step"] == start
    for rank in trace:
        trained = [e["step"] for e in second[rank] if e["event"] == "step"]
        assert trained == list(range(start + 1, steps + 1)), (rank, trained)

    # The epoch's samples, each trained once: up to the checkpoint before the kill, the rest after it.
    # (Steps trained after the checkpoint and before the kill are lost with the killed weights.)
    def names(events: list[dict], up_to: int) -> Counter:
        return Counter(n for e in events if e["event"] == "step" and e["step"] <= up_to for n in e["names"])

    kept = sum((names(first[r], start) + names(second[r], steps) for r in trace), Counter())
    epoch_items = SegmentDataset(
        data / "train", cfg.data, cfg.model.sample_rate, seed=cfg.train.seed, length=steps * cfg.data.batch_size * world
    )
    epoch_items.set_epoch(1)
    expected = Counter(epoch_items[i]["name"] for i in range(len(epoch_items)))
    assert kept == expected, f"repeated: {kept - expected}, left out: {expected - kept}"

    # Only rank 0 logs to MLflow and writes checkpoints.
    assert [e["mlflow"] for r in (0, 1) for e in trace[r] if e["event"] == "start"] == [True, True, False, False]
    reports = {r: [e for e in trace[r] if e["event"] == "report"] for r in trace}
    assert not [e for e in reports[1] if e["checkpoint"]], "rank 1 wrote a checkpoint"
    after = {r: [e["step"] for e in second[r] if e["event"] == "report"] for r in trace}
    assert after[0] == after[1] and after[0], after  # report is a barrier: both ranks, every time
    written = {e["checkpoint"] for e in reports[0]}
    folders = {p.name for p in (runs / "killed-rank").glob("checkpoint_*") if p.is_dir()}
    assert folders and folders <= written, (folders, written)
    assert f"checkpoint_{start:08d}" in folders  # the one both ranks resumed from
    client = MlflowClient(mlflow_server.uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("gsenet").experiment_id], filter_string="tags.`mlflow.runName` = 'killed-rank'"
    )
    for key in run.data.metrics:
        logged = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert len(logged) == len(set(logged)), f"{key} logged more than once at a step: {logged}"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_si_sdr")] == [steps]
