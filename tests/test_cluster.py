"""cluster/gcp.yaml passes Ray's own validation and gsenet's checks; broken variants get the right error."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
SHIPPED = CLUSTER / "gcp.yaml"


def _load_validate():
    spec = importlib.util.spec_from_file_location("cluster_validate", CLUSTER / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validate = _load_validate()


def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def problems_of(tmp_path: Path, config: dict, strict: bool = False) -> str:
    with pytest.raises(validate.ClusterConfigError) as info:
        validate.validate_cluster_config(write(tmp_path, config), strict=strict)
    return str(info.value)


def gpu_worker(config: dict) -> dict:
    return config["available_node_types"]["gpu_l4_spot"]


def test_shipped_yaml_validates():
    prepared = validate.validate_cluster_config(SHIPPED)
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"]["TRAIN_DRIVER"] == 100
    assert head["max_workers"] == 0  # filled in by Ray's prepare_config
    worker = prepared["available_node_types"]["gpu_l4_spot"]
    assert worker["resources"]["GPU"] == 1 and worker["min_workers"] == 0
    assert worker["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert "cluster_synced_files" in prepared  # Ray's defaults were merged
    assert validate.project_warnings(shipped()) == []


def test_shipped_yaml_has_only_the_documented_placeholders(tmp_path):
    message = problems_of(tmp_path, shipped(), strict=True)
    assert "provider.project_id: placeholder YOUR_GCP_PROJECT_ID" in message
    assert "serviceAccounts[0].email" in message
    assert "YOUR_BUCKET" in message
    # Replace them all and strict mode passes.
    text = SHIPPED.read_text().replace("YOUR_GCP_PROJECT_ID", "my-project").replace("YOUR_BUCKET", "my-bucket")
    path = tmp_path / "filled.yaml"
    path.write_text(text)
    assert validate.validate_cluster_config(path, strict=True)["provider"]["project_id"] == "my-project"


def test_scheduling_list_is_rejected(tmp_path):
    config = shipped()
    gpu_worker(config)["node_config"]["scheduling"] = [{"preemptible": True}, {"onHostMaintenance": "TERMINATE"}]
    message = problems_of(tmp_path, config)
    assert "available_node_types.gpu_l4_spot.node_config.scheduling: is a list, must be a mapping" in message


def test_gpu_worker_without_terminate_is_rejected(tmp_path):
    config = shipped()
    gpu_worker(config)["node_config"]["scheduling"] = {"preemptible": True}
    assert "onHostMaintenance: GPU VMs cannot live-migrate; set it to TERMINATE" in problems_of(tmp_path, config)


def test_missing_train_driver_is_rejected(tmp_path):
    config = shipped()
    del config["available_node_types"]["head"]["resources"]["TRAIN_DRIVER"]
    message = problems_of(tmp_path, config)
    assert "available_node_types.head.resources: no TRAIN_DRIVER" in message
    # The `ray start --head --resources` line still says 100: flagged as inconsistent too.
    assert "head_start_ray_commands" in message


def test_bad_yaml_syntax_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("cluster_name: gsenet\nprovider:\n  type: gcp\n   region: us-central1\n")
    with pytest.raises(validate.ClusterConfigError, match=r"broken.yaml: line 4, column \d+: not valid YAML"):
        validate.validate_cluster_config(path)


def test_workers_without_service_accounts_are_rejected(tmp_path):
    config = shipped()
    del gpu_worker(config)["node_config"]["serviceAccounts"]
    message = problems_of(tmp_path, config)
    assert "available_node_types.gpu_l4_spot.node_config.serviceAccounts: missing" in message
    assert "cloud-platform" in message


def test_preemptible_head_is_rejected(tmp_path):
    config = shipped()
    config["available_node_types"]["head"]["node_config"]["scheduling"] = {"provisioningModel": "SPOT"}
    assert "the head must not be preemptible" in problems_of(tmp_path, config)


def test_gpu_worker_needs_gpu_resource_and_driver(tmp_path):
    config = shipped()
    gpu_worker(config)["resources"] = {"CPU": 8}
    del gpu_worker(config)["node_config"]["metadata"]
    message = problems_of(tmp_path, config)
    assert "resources: GPU machine without a GPU count" in message
    assert "install-nvidia-driver" in message


def test_ray_schema_errors_name_the_key(tmp_path):
    config = shipped()
    gpu_worker(config)["resources"]["GPU"] = 0.5  # Ray wants integer resources
    assert "available_node_types.gpu_l4_spot.resources.GPU: Ray's schema rejects it" in problems_of(tmp_path, config)
    config = shipped()
    config["max_wokers"] = 3  # typo: no extra top-level keys allowed
    assert "Ray's schema rejects it" in problems_of(tmp_path, config)


def test_cli_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, str(CLUSTER / "validate.py"), str(SHIPPED)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "gpu_l4_spot" in ok.stdout and "OK" in ok.stdout
    strict = subprocess.run(
        [sys.executable, str(CLUSTER / "validate.py"), str(SHIPPED), "--strict"], capture_output=True, text=True
    )
    assert strict.returncode == 1
    assert "validate: error:" in strict.stderr and "Traceback" not in strict.stderr


@pytest.mark.parametrize("script", ["setup_node.sh", "mlflow_server.sh"])
def test_shell_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(CLUSTER / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_yaml_refers_to_files_that_exist():
    text = SHIPPED.read_text()
    for script in ("setup_node.sh", "mlflow_server.sh"):
        assert f"/home/ray/gsenet/cluster/{script}" in text
        assert (CLUSTER / script).is_file()
    # The repo is mounted at the path the setup commands use.
    assert shipped()["file_mounts"] == {"/home/ray/gsenet": "."}
