"""cluster/gcp.yaml, autoscaled on one machine: a config for Ray's fake_multinode provider.

    python cluster/fake_autoscaler.py --gcs-address 127.0.0.1:PORT > /tmp/fake.yaml
    RAY_FAKE_CLUSTER=1 ray start --head --port=PORT --autoscaling-config=/tmp/fake.yaml \\
        $(python cluster/fake_autoscaler.py --gcs-address 127.0.0.1:PORT --head-args)

The provider is the one Ray's own autoscaler tests use: its "nodes" are raylets it starts as
local processes, so a CPU machine shows the real autoscaler at work (pending worker groups ->
node launches -> idle nodes removed), which is what `ray up cluster/gcp.yaml` does on GCP minus
the VMs. The config is *derived* from gcp.yaml (so it follows every edit of the node types):

- the head type keeps its resources (CPUs, TRAIN_DRIVER) under the name the fake provider gives
  its head node (`ray.head.default`); `ray start --head` declares the same (see `head_start_args`);
- each worker type keeps its resources and min/max workers, except that GPUs become the custom
  resource GPU_STANDIN: a CPU machine cannot start raylets with real GPUs, and a Train worker
  asks for it instead of GPU with `train.gpu_resource=GPU_STANDIN` (it then trains on CPU);
- the idle timeout is shortened (gcp.yaml's 10 min would outlast any test);
- the provider talks to the head at `gcs_address` (pin it to loopback: Ray's default guesses the
  machine's interface address).

Ray's `ray.cluster_utils.AutoscalingCluster` is not used: it reads an example file the wheel does
not ship, and runs `ray stop --force`, which stops every Ray on the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

CLUSTER_DIR = Path(__file__).resolve().parent
GCP_YAML = CLUSTER_DIR / "gcp.yaml"
FAKE_HEAD_TYPE = "ray.head.default"  # the node type FakeMultiNodeProvider tags its head with
GPU_STANDIN = "GPU_STANDIN"  # custom resource that stands for a worker type's GPUs
# Keys the autoscaler reads from a complete config (fake_multinode has no defaults file in the wheel).
EMPTY_SECTIONS: dict[str, Any] = {
    "auth": {},
    "docker": {},
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "rsync_exclude": [],
    "rsync_filter": [],
}


def standin_resources(resources: dict[str, Any], gpu_resource: str = GPU_STANDIN) -> dict[str, Any]:
    """A node type's resources with GPU renamed to the stand-in resource (CPU machines have no GPU)."""
    out = {k: v for k, v in resources.items() if k != "GPU"}
    if resources.get("GPU"):
        out[gpu_resource] = resources["GPU"]
    return out


def fake_autoscaling_config(
    gcs_address: str,
    cluster_yaml: str | Path = GCP_YAML,
    *,
    idle_timeout_minutes: float = 0.1,
    gpu_resource: str = GPU_STANDIN,
) -> dict[str, Any]:
    """The fake_multinode config of `cluster_yaml`'s node types (see the module docstring)."""
    source = yaml.safe_load(Path(cluster_yaml).read_text())
    node_types = source["available_node_types"]
    head_name = source["head_node_type"]
    types: dict[str, Any] = {
        FAKE_HEAD_TYPE: {"resources": dict(node_types[head_name]["resources"]), "node_config": {}, "max_workers": 0}
    }
    for name, node_type in node_types.items():
        if name == head_name:
            continue
        types[name] = {
            "resources": standin_resources(node_type.get("resources") or {}, gpu_resource),
            "node_config": {},
            "min_workers": node_type.get("min_workers", 0),
            "max_workers": node_type.get("max_workers", source.get("max_workers", 0)),
        }
    return {
        "cluster_name": f"{source.get('cluster_name', 'gsenet')}-fake",
        "max_workers": source.get("max_workers", 8),
        "upscaling_speed": source.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,  # no SSH, no setup commands: nodes are local raylets
            "disable_launch_config_check": True,
        },
        "available_node_types": types,
        "head_node_type": FAKE_HEAD_TYPE,
        **copy.deepcopy(EMPTY_SECTIONS),
    }


def head_start_args(config: dict[str, Any]) -> list[str]:
    """`ray start --head` flags that declare the head type's resources (the autoscaler trusts the config)."""
    resources = dict(config["available_node_types"][config["head_node_type"]]["resources"])
    cpus, gpus = resources.pop("CPU", 0), resources.pop("GPU", 0)
    return [f"--num-cpus={cpus}", f"--num-gpus={gpus}", f"--resources={json.dumps(resources)}"]


def validate(config: dict[str, Any]) -> None:
    """Ray's schema check of the generated config (the same `validate_config` as `ray up` uses)."""
    from ray.autoscaler._private.util import validate_config

    validate_config(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gcs-address", required=True, help="the head's GCS address, e.g. 127.0.0.1:PORT")
    parser.add_argument("--cluster-yaml", default=str(GCP_YAML), help="the cluster YAML to derive from")
    parser.add_argument("--idle-timeout-minutes", type=float, default=0.1)
    parser.add_argument("--head-args", action="store_true", help="print the `ray start --head` flags instead")
    args = parser.parse_args(argv)
    config = fake_autoscaling_config(
        args.gcs_address, args.cluster_yaml, idle_timeout_minutes=args.idle_timeout_minutes
    )
    validate(config)
    if args.head_args:
        print(" ".join(f"'{a}'" for a in head_start_args(config)))
    else:
        yaml.safe_dump(config, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
