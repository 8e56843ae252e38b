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
            wait_for_nodes(2)
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
