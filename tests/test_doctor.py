"""`gsenet doctor`: each check says ok or what to fix, and the exit code says whether training can start."""

from __future__ import annotations

import socket

import pytest
from fixtures.gcs import gcs_emulator  # noqa: F401
from fixtures.mlflow_server import free_port, mlflow_server  # noqa: F401
from fixtures.recordings import make_dataset

from gsenet.cli import main


def _lines(capsys) -> dict[str, str]:
    out = capsys.readouterr().out
    return {line.split()[1]: line for line in out.splitlines() if line[:4].strip() in ("ok", "warn", "FIX")}


def test_doctor_all_good_on_a_local_setup(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    make_dataset(tmp_path / "data", n_per_split=1)
    monkeypatch.chdir(tmp_path)
    assert main(["doctor", "--data", "data", "--cache-dir", str(tmp_path / "cache")]) == 0
    lines = _lines(capsys)
    for name in ("python", "torch", "ray", "mlflow", "optuna", "cpu", "gpu", "cluster", "tracking", "data", "cache"):
        assert name in lines, (name, lines)
        assert not lines[name].startswith("FIX"), lines[name]
    assert "torch uses" in lines["cpu"] and "GB free" in lines["cache"]


@pytest.mark.slow
def test_doctor_real_mlflow_server_and_ray_address(mlflow_server, tmp_path, monkeypatch, capsys):  # noqa: F811
    with socket.socket() as listening:  # something answering on the address (doctor checks the TCP port)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        assert main(["doctor", "--mlflow-uri", mlflow_server.uri, "--address", address]) == 0
    lines = _lines(capsys)
    assert lines["tracking"].startswith("ok") and "answers /health" in lines["tracking"]
    assert lines["cluster"].startswith("ok") and address in lines["cluster"]


def test_doctor_names_what_blocks_training(tmp_path, monkeypatch, capsys):
    dead = f"127.0.0.1:{free_port()}"
    argv = ["doctor", "--data", str(tmp_path / "missing"), "--mlflow-uri", f"http://{dead}", "--address", dead]
    assert main(argv) == 1
    out_lines = _lines(capsys)
    assert out_lines["cluster"].startswith("FIX") and "not reachable" in out_lines["cluster"]
    assert out_lines["tracking"].startswith("FIX") and "not reachable" in out_lines["tracking"]
    assert out_lines["data"].startswith("FIX") and "gsenet simulate" in out_lines["data"]


@pytest.mark.slow
def test_doctor_checks_gcs_credentials_and_bucket(gcs_emulator, tmp_path, capsys):  # noqa: F811
    from gsenet.storage import upload_directory

    gcs_emulator.create_bucket("doctor-data")
    upload_directory(make_dataset(tmp_path / "data", n_per_split=1), "gs://doctor-data/ds")
    assert main(["doctor", "--data", "gs://doctor-data/ds"]) == 0
    lines = _lines(capsys)
    assert lines["gcs-auth"].startswith("ok") and "emulator" in lines["gcs-auth"]
    assert lines["gcs-data"].startswith("ok") and "readable" in lines["gcs-data"]
    assert main(["doctor", "--data", "gs://no-such-bucket/ds"]) == 1
    assert "not found" in _lines(capsys)["gcs-data"]
