"""Check a Ray cluster YAML for gsenet offline, before `ray up` spends money on it.

    python cluster/validate.py cluster/gcp.yaml            # structure, Ray's schema, gsenet's needs
    python cluster/validate.py cluster/gcp.yaml --strict   # ... and no YOUR_... placeholders left

Two layers of checks:
1. Ray's own: `prepare_config` (merges the provider defaults, as `ray up` does) then `validate_config`
   (the JSON schema: no unknown top-level keys, integer resources, ...). Validating the raw YAML
   fails on defaults it has not merged yet.
2. gsenet's, which Ray cannot know (its `node_config` is free-form, so typos there surface only at
   `ray up` or, worse, as a worker that cannot read gs://): the head declares TRAIN_DRIVER and is not
   preemptible; GPU worker types declare their GPUs, have a `scheduling` *mapping* with
   onHostMaintenance TERMINATE, a driver, and a service account with the cloud-platform scope.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

try:
    from gsenet.errors import GSENetError
except ImportError:  # run from a checkout without gsenet installed

    class GSENetError(Exception):
        pass


class ClusterConfigError(GSENetError, ValueError):
    """The cluster YAML is invalid; the message names the key and the fix."""


PLACEHOLDER = re.compile(r"YOUR_[A-Z0-9_]+")
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
STORAGE_SCOPES = (CLOUD_PLATFORM_SCOPE, "https://www.googleapis.com/auth/devstorage.read_write")
GPU_MACHINE_PREFIXES = ("g2-", "g4-", "a2-", "a3-", "a4-")  # machine types that come with GPUs
DRIVER_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


def load_cluster_yaml(path: str | Path) -> dict[str, Any]:
    """Read the YAML; syntax errors name the file and line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ClusterConfigError(f"{path}: no such file (the shipped one is cluster/gcp.yaml)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ClusterConfigError(f"{path}:{where}: not valid YAML ({problem}); check indentation and quoting") from None
    if not isinstance(config, dict):
        raise ClusterConfigError(f"{path}: expected a mapping of cluster settings, got {type(config).__name__}")
    return config


def ray_problems(config: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
    """Ray's own checks, as `ray up` runs them. Returns (problems, prepared config or None)."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    provider = config.get("provider")
    if not isinstance(provider, dict) or "type" not in provider:
        return ["provider: missing; add `provider: {type: gcp, region: ..., project_id: ...}`"], None
    try:
        prepared = prepare_config(copy.deepcopy(config))
        validate_config(prepared)
    except jsonschema.ValidationError as exc:
        key = ".".join(str(part) for part in exc.absolute_path) or "(top level)"
        return [f"{key}: Ray's schema rejects it: {exc.message}"], None
    except (KeyError, ValueError, AssertionError, RuntimeError, TypeError) as exc:
        return [f"Ray's prepare/validate step failed: {type(exc).__name__}: {exc}"], None
    return [], prepared


def is_gpu_node_type(node_type: dict[str, Any]) -> bool:
    node_config = node_type.get("node_config") or {}
    machine = str(node_config.get("machineType", ""))
    return (
        bool(node_config.get("guestAccelerators"))
        or machine.startswith(GPU_MACHINE_PREFIXES)
        or (node_type.get("resources") or {}).get("GPU", 0) > 0
    )


def _metadata_value(node_config: dict[str, Any], key: str) -> str | None:
    items = (node_config.get("metadata") or {}).get("items") or []
    for item in items:
        if isinstance(item, dict) and item.get("key") == key:
            return str(item.get("value"))
    return None


def _start_command_resources(commands: list[Any]) -> dict[str, Any] | None:
    """The JSON of `--resources=...` in the head's `ray start` command, if any."""
    for command in commands or []:
        match = re.search(r"--resources[= ]+'([^']*)'", str(command))
        if match:
            try:
                return json.loads(match.group(1))
            except json.JSONDecodeError:
                return {"<invalid JSON>": match.group(1)}
    return None


def head_problems(config: dict[str, Any]) -> list[str]:
    name = config.get("head_node_type")
    head = (config.get("available_node_types") or {}).get(name) or {}
    key = f"available_node_types.{name}"
    problems = []
    resources = head.get("resources") or {}
    if resources.get("TRAIN_DRIVER", 0) <= 0:
        problems.append(
            f"{key}.resources: no TRAIN_DRIVER; trial drivers are pinned to the head with it: "
            'add `"TRAIN_DRIVER": 100` (and --resources=\'{"TRAIN_DRIVER": 100}\' to `ray start --head`)'
        )
    start = _start_command_resources(config.get("head_start_ray_commands"))
    if start is not None and start.get("TRAIN_DRIVER") != resources.get("TRAIN_DRIVER"):
        problems.append(
            f"head_start_ray_commands: `ray start --head --resources` declares TRAIN_DRIVER="
            f"{start.get('TRAIN_DRIVER')}, but {key}.resources says {resources.get('TRAIN_DRIVER')}: make them equal"
        )
    scheduling = (head.get("node_config") or {}).get("scheduling")
    if isinstance(scheduling, dict) and (
        scheduling.get("preemptible") or scheduling.get("provisioningModel") == "SPOT"
    ):
        problems.append(
            f"{key}.node_config.scheduling: the head must not be preemptible (it holds the Tune state, "
            "trial drivers and MLflow); remove preemptible/provisioningModel from the head"
        )
    return problems


def worker_problems(name: str, node_type: dict[str, Any]) -> list[str]:
    key = f"available_node_types.{name}.node_config"
    node_config = node_type.get("node_config") or {}
    problems = []
    scheduling = node_config.get("scheduling")
    if scheduling is not None and not isinstance(scheduling, dict):
        problems.append(
            f"{key}.scheduling: is a {type(scheduling).__name__}, must be a mapping "
            "(write `scheduling: {onHostMaintenance: TERMINATE, preemptible: true}`, not `- preemptible: true`)"
        )
    accounts = node_config.get("serviceAccounts") or []
    scopes = {scope for account in accounts if isinstance(account, dict) for scope in account.get("scopes") or []}
    if not scopes & set(STORAGE_SCOPES):
        problems.append(
            f"{key}.serviceAccounts: missing (or without the cloud-platform scope): only the head gets a service "
            f"account by default, so these workers could not read gs:// data or write checkpoints; add "
            f"`serviceAccounts: [{{email: ray-autoscaler-sa-v1@PROJECT.iam.gserviceaccount.com, "
            f"scopes: [{CLOUD_PLATFORM_SCOPE}]}}]`"
        )
    if not is_gpu_node_type(node_type):
        return problems
    if isinstance(scheduling, dict) and scheduling.get("onHostMaintenance") != "TERMINATE":
        problems.append(f"{key}.scheduling.onHostMaintenance: GPU VMs cannot live-migrate; set it to TERMINATE")
    if scheduling is None:
        problems.append(f"{key}.scheduling: GPU VMs need `scheduling: {{onHostMaintenance: TERMINATE}}`")
    if (node_type.get("resources") or {}).get("GPU", 0) <= 0:
        problems.append(
            f"available_node_types.{name}.resources: GPU machine without a GPU count; the autoscaler only "
            'launches it for GPU work if it is declared, e.g. `resources: {"CPU": 8, "GPU": 1}`'
        )
    if str(_metadata_value(node_config, "install-nvidia-driver")).lower() != "true":
        problems.append(
            f"{key}.metadata: GPU VM without a driver; with a Deep Learning VM image add "
            '`metadata: {items: [{key: install-nvidia-driver, value: "True"}]}`'
        )
    return problems


def placeholder_problems(value: Any, key: str = "") -> list[str]:
    """Every string value still holding a YOUR_... placeholder (comments are not values)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in placeholder_problems(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in placeholder_problems(v, f"{key}[{i}]")]
    found = PLACEHOLDER.findall(str(value)) if isinstance(value, str) else []
    return [f"{key}: placeholder {', '.join(sorted(set(found)))} still in {value!r}; replace it"] if found else []


def project_problems(config: dict[str, Any], strict: bool = False) -> list[str]:
    """gsenet's own checks on the raw (not default-merged) config."""
    node_types = config.get("available_node_types")
    if not isinstance(node_types, dict) or config.get("head_node_type") not in node_types:
        return ["available_node_types / head_node_type: define node types and name the head among them"]
    problems = head_problems(config)
    for name, node_type in node_types.items():
        if name != config["head_node_type"]:
            problems += worker_problems(name, node_type or {})
    if config.get("provider", {}).get("type") == "gcp" and len(node_types) < 2:
        problems.append("available_node_types: no worker node type; add a GPU worker type")
    if strict:
        problems += placeholder_problems(config)
    return problems


def project_warnings(config: dict[str, Any]) -> list[str]:
    warnings = []
    if DRIVER_TIMEOUT_ENV not in json.dumps(config):
        warnings.append(
            f"{DRIVER_TIMEOUT_ENV} is not set anywhere: Ray Train waits only 60 s for its worker group, "
            "less than a GPU VM takes to start; set it (docker run_options `--env ...=1200`)"
        )
    return warnings


def validate_cluster_config(path: str | Path, strict: bool = False) -> dict[str, Any]:
    """Validate the YAML at `path`; return Ray's prepared config or raise ClusterConfigError with every problem."""
    config = load_cluster_yaml(path)
    problems, prepared = ray_problems(config)
    problems += project_problems(config, strict=strict)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ClusterConfigError(f"{path}: {len(problems)} problem(s):\n{listing}")
    return prepared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(Path(__file__).with_name("gcp.yaml")))
    parser.add_argument("--strict", action="store_true", help="also fail on YOUR_... placeholders left in")
    args = parser.parse_args(argv)
    logging.getLogger("ray.autoscaler").setLevel(logging.WARNING)  # prepare_config's INFO chatter
    try:
        prepared = validate_cluster_config(args.config, strict=args.strict)
    except GSENetError as exc:
        print(f"validate: error: {exc}", file=sys.stderr)
        return 1
    for warning in project_warnings(load_cluster_yaml(args.config)):
        print(f"validate: warning: {warning}", file=sys.stderr)
    types = prepared["available_node_types"]
    for name, node_type in types.items():
        role = (
            "head"
            if name == prepared["head_node_type"]
            else f"workers {node_type['min_workers']}..{node_type['max_workers']}"
        )
        print(f"  {name:<16} {node_type['node_config'].get('machineType', '?'):<16} {node_type['resources']} ({role})")
    print(f"{args.config}: OK" + ("" if args.strict else " (placeholders not checked; use --strict before `ray up`)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
