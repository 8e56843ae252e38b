"""cluster/gcp.yaml autoscaled on loopback: Ray's fake_multinode provider with a config derived
from gcp.yaml by cluster/fake_autoscaler.py (what `ray up` does on GCP, minus the VMs).

A smoke sweep starts on the head alone (zero worker nodes); the trials' worker groups ask for the
worker type's GPU stand-in, so the real autoscaler launches worker nodes for them; every trial
driver runs on the head (TRAIN_DRIVER) and every Train worker on an added node; once the sweep is
done the idle worker nodes are removed. Only this test's own processes are stopped (never
`ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.ray_cluster import LocalRayCluster, _node_port_flags, free_port
from fixtures.recordings import make_dataset

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def load_fake_autoscaler():
    """cluster/fake_autoscaler.py (cluster/ is tooling beside the YAML, not a package)."""
    spec = importlib.util.spec_from_file_location("fake_autoscaler", ROOT / "cluster" / "fake_autoscaler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fake_config_is_derived_from_gcp_yaml(tmp_path):
    import yaml

    fake = load_fake_autoscaler()
    gcp = yaml.safe_load((ROOT / "cluster" / "gcp.yaml").read_text())
    config = fake.fake_autoscaling_config(f"{LOOPBACK}:6379")
    fake.validate(config)  # Ray's own schema check
    types = config["available_node_types"]
    assert (
        types[config["head_node_type"]]["resources"] == gcp["available_node_types"][gcp["head_node_type"]]["resources"]
    )
    workers = {k: v for k, v in gcp["available_node_types"].items() if k != gcp["head_node_type"]}
    assert set(types) == {config["head_node_type"], *workers}
    for name, node_type in workers.items():
        expected = {k: v for k, v in node_type["resources"].items() if k != "GPU"}
        expected[fake.GPU_STANDIN] = node_type["resources"]["GPU"]
        assert types[name]["resources"] == expected
        assert (types[name]["min_workers"], types[name]["max_workers"]) == (
            node_type["min_workers"],
            node_type["max_workers"],
        )
    assert config["idle_timeout_minutes"] < gcp["idle_timeout_minutes"]
    assert config["provider"] == {**config["provider"], "type": "fake_multinode", "gcs_address": f"{LOOPBACK}:6379"}
    # A new worker type in gcp.yaml shows up in the fake config with its GPUs mapped.
    gcp["available_node_types"]["gpu_a100_spot"] = {
        "min_workers": 0, "max_workers": 4, "resources": {"CPU": 12, "GPU": 1}, "node_config": {},
    }  # fmt: skip
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(gcp))
    edited = fake.fake_autoscaling_config(f"{LOOPBACK}:6379", tmp_path / "edited.yaml")
    assert edited["available_node_types"]["gpu_a100_spot"]["resources"] == {"CPU": 12, fake.GPU_STANDIN: 1}


def _wait_for_gcs(port: int, cluster: LocalRayCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in cluster.processes):
            raise RuntimeError(f"the fake-cluster head exited:\n{cluster.logs()}")
        # `ray start --block` says so once the GCS, raylet and dashboard are up (an open port is too early)
        started = "Ray runtime started" in (cluster.temp_dir / "head.log").read_text(errors="replace")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
            if started:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the fake-cluster head did not start on {LOOPBACK}:{port} within {timeout:.0f} s")


@contextlib.contextmanager
def fake_autoscaling_cluster(idle_timeout_minutes: float = 0.1) -> Iterator[LocalRayCluster]:
    """`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=CFG` on 127.0.0.1, CFG from gcp.yaml."""
    fake = load_fake_autoscaler()
    temp_dir = Path(tempfile.mkdtemp(prefix="rfa", dir="/tmp"))  # short: Ray's socket paths
    gcs_port = free_port()
    cluster = LocalRayCluster(f"{LOOPBACK}:{gcs_port}", gcs_port, temp_dir, free_port())
    config = fake.fake_autoscaling_config(cluster.address, idle_timeout_minutes=idle_timeout_minutes)
    fake.validate(config)
    (temp_dir / "autoscaling.yaml").write_text(json.dumps(config))
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        # one machine: every node (the head and the raylets the provider starts) binds 127.0.0.1 only
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",  # worker groups wait for node launches
        # Train's placement-group cleaner asks the State API: this cluster's dashboard, not a guess
        "RAY_API_SERVER_ADDRESS": f"http://{LOOPBACK}:{cluster.dashboard_port}",
    }
    try:
        cluster.start_node(
            [
                "--head", f"--port={gcs_port}", f"--temp-dir={temp_dir}",
                f"--autoscaling-config={temp_dir / 'autoscaling.yaml'}", *fake.head_start_args(config),
                "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={cluster.dashboard_port}",
                f"--ray-client-server-port={free_port()}", *_node_port_flags(),
            ],
            env, "head", LOOPBACK,
        )  # fmt: skip
        _wait_for_gcs(gcs_port, cluster, timeout=180)
        yield cluster
    finally:
        cluster.stop(timeout=10)


def alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n["Alive"]]


@contextlib.contextmanager
def watching_nodes(interval_s: float = 1.0) -> Iterator[dict[str, dict]]:
    """{node id: resources} of every node seen alive while the block runs (a polling thread)."""
    import threading

    import ray

    seen: dict[str, dict] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            with contextlib.suppress(Exception):
                seen.update({n["NodeID"]: dict(n["Resources"]) for n in ray.nodes() if n["Alive"]})
            done.wait(interval_s)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(timeout=30)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(1)


SPACE = """
description: smoke sweep on the fake autoscaling cluster (GPU trials on stand-in GPU nodes)
fixed:
  train.epochs: 1
  train.steps_per_epoch: 2
  train.metric_subset: 0
  train.keep_checkpoints: 1
  train.num_workers: 1
  train.gpus_per_worker: 1
  train.cpus_per_worker: 1
  model.width_multiplier: 0.25
  model.dilation_depth: 1
  data.segment_seconds: 0.5
  data.batch_size: 1
sweep:
  metric: val_si_sdr
  num_samples: 2
  max_concurrent: 2
  scheduler: fifo
  searcher: random
  seed: 0
  register_model: ""
parameters:
  optim.lr: {type: choice, values: [1.0e-3, 3.0e-3]}
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_sweep_autoscales_worker_nodes_from_zero_and_back(tmp_path, monkeypatch):
    import ray
    import yaml
    from ray.util.state import list_actors

    from search.space import parse_space
    from search.sweep import new_plan, run_sweep

    fake = load_fake_autoscaler()
    data = make_dataset(tmp_path / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=2)
    space = parse_space(yaml.safe_load(SPACE), source=str(tmp_path / "fake.yaml"), text=SPACE)
    plan = new_plan(
        space,
        space.settings(),
        name="autoscaled",
        storage_path=str(tmp_path / "runs"),
        cli_fixed={"data.path": str(data), "train.gpu_resource": fake.GPU_STANDIN},
        mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    with fake_autoscaling_cluster() as cluster:
        # Ray's State API client lets RAY_API_SERVER_ADDRESS override an explicit address: point it at ours
        # (an earlier module's local Ray may have left its own there).
        monkeypatch.setenv("RAY_API_SERVER_ADDRESS", f"http://{LOOPBACK}:{cluster.dashboard_port}")
        try:
            ray.init(address=cluster.address, _node_ip_address=LOOPBACK, log_to_driver=False)
            (head,) = alive_nodes()  # zero worker nodes: min_workers is 0 in gcp.yaml
            with watching_nodes() as seen:  # every node alive at some point during the sweep
                report = run_sweep(plan, address=cluster.address, interval_s=600)
            assert [r["state"] for r in report.rows] == ["completed"] * 2

            dashboard = f"http://{LOOPBACK}:{cluster.dashboard_port}"  # ours, not another Ray on the machine
            actors = list_actors(address=dashboard, detail=True, limit=10_000, raise_on_missing_output=False)
            drivers = [a for a in actors if "ImplicitFunc" in a.class_name or "run_trial" in a.class_name]
            workers = [a for a in actors if a.class_name == "RayTrainWorker"]
            assert len(drivers) == 2 and {a.node_id for a in drivers} == {head["NodeID"]}  # TRAIN_DRIVER: head
            assert len(workers) == 2 and head["NodeID"] not in {a.node_id for a in workers}
            added = {a.node_id for a in workers}  # the nodes the autoscaler launched for the worker groups
            assert added <= set(seen), (added, seen)
            assert all(seen[n].get(fake.GPU_STANDIN) == 1 for n in added), seen  # gcp.yaml's GPU worker type

            wait_until(lambda: len(alive_nodes()) == 1, 180, "idle worker nodes removed by the autoscaler")
            assert [n["NodeID"] for n in alive_nodes()] == [head["NodeID"]]
        except Exception as exc:
            raise AssertionError(f"{exc}\n\nRay logs:\n{cluster.logs()}") from exc
        finally:
            ray.shutdown()
