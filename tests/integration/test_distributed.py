"""Multi-worker GSENet on a real two-node Ray cluster on loopback (one DDP worker per node, gloo).

The sharded validation (each rank scores its share, `all_reduce` sums) must give exactly what one
process scoring every recording gives on the same checkpoint, and only rank 0 may log to MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.mlflow_server import mlflow_server  # noqa: F401  (pytest fixture)
from fixtures.ray_cluster import HEAD_IP, running_ray_cluster, wait_for_nodes
from fixtures.ray_local import ray_local  # noqa: F401  (pytest fixture)
from fixtures.recordings import make_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
EPOCHS, STEPS = 2, 3


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


def test_two_workers_on_two_nodes_validate_like_one_process(mlflow_server, tmp_path):  # noqa: F811
    import ray
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
    env = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "180"}
    with running_ray_cluster({"TRAIN_DRIVER": 100}, [{"worker_node": 1}], cpus_per_node=1, env=env) as cluster:
        try:
            ray.init(address=cluster.address, _node_ip_address=HEAD_IP, log_to_driver=False)
            wait_for_nodes(2, timeout=300)  # a loaded 2-core box: nodes can take minutes to register
            result = fit(cfg)
        except Exception as exc:
            raise AssertionError(f"{exc}\n\nRay node logs:\n{cluster.logs()}") from exc
        finally:
            ray.shutdown()

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


def loader_names(config: dict) -> None:
    """Train worker: the item names each rank's loader yields, from the start of an epoch and from
    a mid-epoch resume point (`make_train_loader(start_batch=...)`, what a restarted worker builds)."""
    import ray.train
    import torch.distributed as dist

    from gsenet.config import from_dict
    from gsenet.data import SegmentDataset
    from gsenet.train import make_train_loader

    cfg, world = from_dict(config["cfg"]), ray.train.get_context().get_world_size()
    dataset = SegmentDataset(
        Path(config["data"]) / "train", cfg.data, cfg.model.sample_rate, seed=cfg.train.seed,
        length=cfg.train.steps_per_epoch * cfg.data.batch_size * world,
    )  # fmt: skip
    dataset.set_epoch(1)
    per_rank = {}
    for start in (0, config["resume_batch"]):
        names = [batch["names"] for batch in make_train_loader(dataset, cfg, start, world)]
        gathered = [None] * world
        dist.all_gather_object(gathered, names)
        per_rank[start] = gathered
    epoch = [dataset[i]["name"] for i in range(len(dataset))]  # the epoch's items, in index order
    if ray.train.get_context().get_world_rank() == 0:  # one machine: a file is the simplest way back
        Path(config["out"]).write_text(json.dumps({"per_rank": per_rank, "epoch": epoch}))


def _kill_one_rank_after_first_checkpoint(snapshot: Path, api: str, killed: list, timeout: float = 400) -> None:
    """SIGKILL one Train worker process as soon as the epoch-1 checkpoint is committed (epoch 2 running)."""
    import os
    import signal
    import time

    from ray.util.state import list_actors

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if snapshot.is_file() and "checkpoint_dir_name" in snapshot.read_text():
            filters = [("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
            workers = list_actors(address=api, filters=filters, raise_on_missing_output=False)
            if len(workers) == 2:
                pid = max(w.pid for w in workers)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.2)


@pytest.mark.timeout(1200)  # two Train runs, one with a worker-group restart, on a busy 2-core box
def test_a_killed_rank_resumes_both_from_the_checkpoint_and_no_sample_repeats(ray_local, mlflow_server, tmp_path):  # noqa: F811
    import os
    import sys
    import threading
    from collections import Counter

    import ray.train
    from mlflow.tracking import MlflowClient
    from ray import cloudpickle
    from ray.train.torch import TorchTrainer

    from gsenet.config import ExperimentConfig, apply_overrides, to_dict
    from gsenet.train import fit

    data = make_dataset(tmp_path / "ds", n_per_split={"train": 3, "val": 2, "test": 1}, seconds=1.0, seed=13)
    steps = 4
    cfg = apply_overrides(
        ExperimentConfig(),
        {
            "data.path": str(data), "data.segment_seconds": 0.5, "data.batch_size": 2,
            "model.widths": [4, 4, 8, 8, 8, 8], "model.dilation_depth": 1, "optim.lr": 3e-3,
            "train.epochs": 2, "train.steps_per_epoch": steps, "train.metric_subset": 0, "train.max_failures": 2,
            "train.num_workers": 2, "train.cpus_per_worker": 1, "train.name": "killed-rank",
            "train.storage_path": str(tmp_path / "runs"), "tracking.mlflow_uri": mlflow_server.uri,
        },
    )  # fmt: skip
    # 1. A rank killed in epoch 2: Train restarts the group; both ranks resume from the epoch-1 checkpoint.
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_one_rank_after_first_checkpoint,
        args=(tmp_path / "runs" / "killed-rank" / "checkpoint_manager_snapshot.json",
              os.environ["RAY_API_SERVER_ADDRESS"], killed),
        daemon=True,
    )  # fmt: skip
    killer.start()
    result = fit(cfg)
    killer.join(timeout=30)
    assert killed, "no Train worker was killed (the run ended before its first checkpoint was committed?)"
    assert result.metrics["step"] == 2 * steps and result.metrics["epoch"] == 2
    assert result.metrics["start_step"] == steps  # the restarted group began at the checkpoint's step
    client = MlflowClient(mlflow_server.uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("gsenet").experiment_id], filter_string="tags.`mlflow.runName` = 'killed-rank'"
    )
    history = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_si_sdr"))
    assert history.count(steps) == 1 and history[-1] == 2 * steps, history  # epoch 1 was not trained again

    # 2. From a mid-epoch resume point (a preemption checkpoint), the ranks' loaders skip exactly
    #    the batches already trained, on every rank: no sample twice in the epoch, none left out.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    resume_batch = 1
    trainer = TorchTrainer(
        loader_names,
        train_loop_config={
            "cfg": to_dict(cfg),
            "data": str(data),
            "resume_batch": resume_batch,
            "out": str(tmp_path / "names.json"),
        },
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name="loader-names", storage_path=str(tmp_path / "runs")),
    )
    trainer.fit()
    seen = json.loads((tmp_path / "names.json").read_text())
    per_rank, epoch = {int(k): v for k, v in seen["per_rank"].items()}, seen["epoch"]
    assert len(per_rank[0]) == 2 and all(len(rank) == steps for rank in per_rank[0])
    trained = Counter(name for rank in per_rank[0] for batch in rank[:resume_batch] for name in batch)
    resumed = Counter(name for rank in per_rank[resume_batch] for batch in rank for name in batch)
    assert all(len(rank) == steps - resume_batch for rank in per_rank[resume_batch])  # same step on both ranks
    assert not trained & resumed, "a sample trained before the resume point came again after it"
    assert trained + resumed == Counter(epoch), "the resumed epoch left samples out"
