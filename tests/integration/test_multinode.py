"""The cluster layout of cluster/gcp.yaml, on a real two-node Ray cluster on 127.0.0.1.

The head declares TRAIN_DRIVER (as `ray start --head --resources='{"TRAIN_DRIVER": 100}'` on GCP); a
second node stands for a GPU worker. A Train driver pinned with {"TRAIN_DRIVER": 0.01}, as a sweep's
trials are, must run on the head while its two DDP (gloo) workers span both nodes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
from fixtures.ray_cluster import HEAD_IP, running_ray_cluster, wait_for_nodes

pytestmark = pytest.mark.slow


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
def test_train_driver_on_head_workers_span_nodes(tmp_path):
    import ray
    from ray import cloudpickle

    # Ray workers cannot import this test module: ship its functions by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    env = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "120"}
    with running_ray_cluster({"TRAIN_DRIVER": 100}, [{"worker_node": 1}], cpus_per_node=1, env=env) as cluster:
        try:
            ray.init(address=cluster.address, _node_ip_address=HEAD_IP, log_to_driver=False)
            nodes = wait_for_nodes(2)
            head = [n["NodeID"] for n in nodes if n["Resources"].get("TRAIN_DRIVER", 0) > 0]
            other = [n["NodeID"] for n in nodes if n["Resources"].get("worker_node", 0) > 0]
            assert len(head) == 1 and len(other) == 1 and head != other

            pinned = ray.remote(num_cpus=0, resources={"TRAIN_DRIVER": 0.01})(drive_training)
            outcome = ray.get(pinned.remote(str(tmp_path / "runs")), timeout=240)
        except Exception as exc:
            raise AssertionError(f"{exc}\n\nRay node logs:\n{cluster.logs()}") from exc
        finally:
            ray.shutdown()

    assert outcome["driver_node"] == head[0], "the Train driver must be pinned to the head by TRAIN_DRIVER"
    metrics = outcome["metrics"]
    assert metrics["world_size"] == 2
    assert sorted(metrics["worker_nodes"].split(",")) == sorted(head + other), "DDP workers must span both nodes"
    assert metrics["loss"] < 100 and outcome["has_checkpoint"]
    assert any((tmp_path / "runs" / "multinode").rglob("model.pt")), "checkpoint not persisted to storage_path"
