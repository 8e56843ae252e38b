"""Fill cluster/gcp.yaml for one project: `gsenet cluster render --project P --bucket B ...`.

The template stays a plain Ray cluster YAML (`ray up cluster/gcp.yaml` works as Ray users expect);
rendering replaces its YOUR_... placeholders, sets region and zone, the GPU worker type (L4 or
A100, Spot or on-demand) and the worker cap, then checks the result with cluster/validate.py
(Ray's own validation plus gsenet's), so what is written is what `ray up` will accept.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path
from typing import Any

from gsenet.errors import GSENetError

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"
TEMPLATE = CLUSTER_DIR / "gcp.yaml"
TEMPLATE_WORKER = "gpu_l4_spot"
# --gpu -> (machine type, CPUs): g2/a2 machine types come with their GPU attached.
GPUS = {"l4": ("g2-standard-8", 8), "a100": ("a2-highgpu-1g", 12)}
SPOT_KEYS = ("provisioningModel", "preemptible", "instanceTerminationAction")


class ClusterError(GSENetError):
    """The cluster cannot be rendered or reached; the message says what to change."""


def load_validator():
    """cluster/validate.py (a script beside the YAML, not part of the package)."""
    path = CLUSTER_DIR / "validate.py"
    if not path.is_file():
        raise ClusterError(
            f"{path} is missing: run gsenet from a checkout of the repository (cluster/ is not packaged)"
        )
    spec = importlib.util.spec_from_file_location("gsenet_cluster_validate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return value.replace(old, new) if isinstance(value, str) else value


def render(
    *,
    project: str,
    bucket: str,
    region: str = "us-central1",
    zone: str = "",
    gpu: str = "l4",
    max_workers: int = 8,
    spot: bool = True,
    template: Path = TEMPLATE,
) -> dict[str, Any]:
    """The template as a dict with this project's settings (validated by the caller with `check`)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", project):
        raise ClusterError(f"--project {project!r} is not a GCP project id (6-30 lowercase letters, digits, dashes)")
    bucket = bucket.removeprefix("gs://").strip("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", bucket):
        raise ClusterError(f"--bucket {bucket!r} is not a bucket name (no gs://, lowercase, e.g. my-gsenet-bucket)")
    if gpu not in GPUS:
        raise ClusterError(f"--gpu {gpu!r}: choose one of {sorted(GPUS)}")
    if max_workers < 1:
        raise ClusterError(f"--max-workers {max_workers}: must be at least 1")
    validator = load_validator()
    config = validator.load_cluster_yaml(template)
    config = _replace(_replace(config, "YOUR_GCP_PROJECT_ID", project), "YOUR_BUCKET", bucket)
    config["provider"]["region"] = region
    config["provider"]["availability_zone"] = zone or f"{region}-a"
    config["max_workers"] = max_workers
    worker = copy.deepcopy(config["available_node_types"].pop(TEMPLATE_WORKER))
    machine, cpus = GPUS[gpu]
    worker["node_config"]["machineType"] = machine
    worker["resources"] = {"CPU": cpus, "GPU": 1}
    worker["max_workers"] = max_workers
    scheduling = worker["node_config"]["scheduling"]
    if not spot:  # on-demand: never preempted, about 3x the price
        for key in SPOT_KEYS:
            scheduling.pop(key, None)
        scheduling["automaticRestart"] = True
    config["available_node_types"][f"gpu_{gpu}_{'spot' if spot else 'ondemand'}"] = worker
    return config


def check(path: Path) -> None:
    """Validate a rendered file as `ray up` would, strictly (no placeholder may be left)."""
    import logging

    validator = load_validator()
    logging.getLogger("ray.autoscaler").setLevel(logging.WARNING)  # prepare_config's INFO chatter
    try:
        validator.validate_cluster_config(path, strict=True)
    except validator.ClusterConfigError as exc:
        raise ClusterError(str(exc)) from None


def write(config: dict[str, Any], path: Path, command: str) -> Path:
    import yaml

    header = (
        f"# Rendered from cluster/gcp.yaml by:\n#   {command}\n"
        "# Read cluster/gcp.yaml for why each setting is what it is; start it with\n"
        f"#   gsenet cluster up --config {path}   (or: ray up {path})\n\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + yaml.safe_dump(config, sort_keys=False, width=120))
    try:
        check(tmp)
    except ClusterError:
        tmp.unlink()
        raise
    tmp.replace(path)
    return path
