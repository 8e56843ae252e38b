"""`gsenet cluster`: render writes a validated YAML; the other actions print (and run) Ray's own CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gsenet.cli import main
from gsenet.commands.cluster import ray_cli

REPO = Path(__file__).resolve().parents[1]


def test_render_fills_and_validates_the_template(tmp_path, capsys):
    out = tmp_path / "c.yaml"
    argv = ["cluster", "render", "--project", "my-proj-1", "--bucket", "gs://my-bucket", "--region", "europe-west4"]
    assert main([*argv, "--gpu", "a100", "--on-demand", "--max-workers", "3", "--out", str(out)]) == 0
    assert f"wrote {out} (validated)" in capsys.readouterr().out
    text = out.read_text()
    assert "YOUR_" not in text.split("\n\n", 1)[1]  # no placeholder left (the header is a comment)
    config = yaml.safe_load(text)
    assert (config["provider"]["project_id"], config["provider"]["region"]) == ("my-proj-1", "europe-west4")
    assert config["provider"]["availability_zone"] == "europe-west4-a"
    workers = {k: v for k, v in config["available_node_types"].items() if k != "head"}
    assert list(workers) == ["gpu_a100_ondemand"]
    worker = workers["gpu_a100_ondemand"]
    assert worker["node_config"]["machineType"] == "a2-highgpu-1g" and worker["max_workers"] == 3
    assert "preemptible" not in worker["node_config"]["scheduling"]
    assert any("gs://my-bucket/gsenet/mlflow" in c for c in config["head_start_ray_commands"])
    # Ray's own validation and gsenet's, strictly, on the written file
    from gsenet.cluster_config import load_validator

    load_validator().validate_cluster_config(out, strict=True)
    assert main([*argv, "--out", str(out)]) == 1  # never overwrites without --force
    assert main([*argv, "--out", str(out), "--force"]) == 0
    spot = yaml.safe_load(out.read_text())["available_node_types"]["gpu_l4_spot"]
    assert spot["node_config"]["scheduling"]["provisioningModel"] == "SPOT"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--project", "X", "--bucket", "b-1"], "is not a GCP project id"),
        (["--project", "my-proj-1", "--bucket", "Bad Bucket"], "is not a bucket name"),
        (["--project", "my-proj-1", "--bucket", "b-1", "--max-workers", "0"], "--max-workers 0"),
    ],
)
def test_render_refuses_bad_settings(tmp_path, argv, message, capsys):
    assert main(["cluster", "render", *argv, "--out", str(tmp_path / "c.yaml")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c.yaml").exists()


def test_dry_run_prints_the_ray_commands(capsys):
    ray = ray_cli()
    for action, expected in (
        ("up", f"$ {ray} up c.yaml -y"),
        ("down", f"$ {ray} down c.yaml -y"),
        ("status", f"$ {ray} exec c.yaml 'ray status'"),
    ):
        assert main(["cluster", action, "--config", "c.yaml", "--dry-run"]) == 0
        assert capsys.readouterr().out.strip() == expected
    assert main(["cluster", "ui", "--config", "c.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for url in ("MLflow UI:         http://127.0.0.1:5000", "http://127.0.0.1:8265", "http://127.0.0.1:8080"):
        assert url in out
    assert f"$ {ray} attach c.yaml -p 5000 -p 8265 -p 8080" in out
    assert "--tmux 'optuna-dashboard sqlite:////home/ray/state/optuna.db --host 127.0.0.1 --port 8080'" in out
    assert main(["cluster", "submit", "--dry-run", "--", "gsenet", "search", "--space", "default"]) == 0
    out = capsys.readouterr().out
    assert f"$ {ray} job submit --address http://127.0.0.1:8265 --no-wait -- gsenet search --space default" in out
    assert "--follow JOB_ID" in out


def test_actions_without_a_rendered_config_say_how_to_make_one(tmp_path, capsys):
    assert main(["cluster", "up", "--config", str(tmp_path / "none.yaml")]) == 1
    assert "gsenet cluster render --project P --bucket B" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_submit_runs_a_job_on_a_local_multinode_cluster(tmp_path):
    from fixtures.ray_cluster import free_port, running_ray_cluster

    with running_ray_cluster(head_resources={"TRAIN_DRIVER": 100}, worker_resources=[{"worker_node": 1}]) as cluster:
        address = f"http://127.0.0.1:{cluster.dashboard_port}"
        # A stale API-server address in the environment (what a local `gsenet train` leaves) must not win
        # over --address: Ray's CLI would otherwise connect there.
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{free_port()}"}
        command = [sys.executable, "-m", "gsenet", "cluster", "submit", "--address", address, "--"]
        command += [sys.executable, "-c", "print('hello from', 'the job')"]
        deadline, done = time.monotonic() + 240, None
        while time.monotonic() < deadline:  # the Jobs API comes up a little after the head
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
            if done.returncode == 0:
                break
            time.sleep(3)
        assert done.returncode == 0, done.stdout + done.stderr
        job_id = done.stdout.split("submitted job ", 1)[1].split(";", 1)[0]
        assert job_id != "JOB_ID" and f"--follow {job_id}" in done.stdout
        logs = subprocess.run(
            [ray_cli(), "job", "logs", "--address", address, "--follow", job_id],
            env={key: value for key, value in env.items() if key != "RAY_API_SERVER_ADDRESS"}, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert "hello from the job" in logs.stdout, logs.stdout + logs.stderr
