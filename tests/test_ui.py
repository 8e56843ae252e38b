"""`gsenet ui`: serves the local store on the port asked for, and stops promptly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures.mlflow_server import free_port

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode(errors="replace")


def test_ui_serves_the_local_store_and_exits_on_sigterm(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        ui = subprocess.Popen(
            [sys.executable, "-m", "gsenet", "ui", "--port", str(port)], cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    try:
        deadline, page = time.monotonic() + 300, ""
        while time.monotonic() < deadline and ui.poll() is None:
            try:
                page = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                time.sleep(1)
        assert "<html" in page.lower(), log.read_text()[-4000:]
        assert (tmp_path / "mlruns.db").exists()  # the default store, in the working folder
        # `gsenet ui` polls /health once a second, so the page can answer before it says "ready"
        while time.monotonic() < deadline and "MLflow UI ready" not in log.read_text():
            time.sleep(0.5)
        assert f"MLflow UI ready: http://127.0.0.1:{port}" in log.read_text()
        started = time.monotonic()
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=30) == 0
        assert time.monotonic() - started < 15, "took too long to stop"
        with socket.socket() as sock:  # nothing is left listening on the port
            assert sock.connect_ex(("127.0.0.1", port)) != 0
        text = log.read_text()
        assert "gsenet ui: stopped" in text
    finally:
        if ui.poll() is None:
            ui.kill()


def test_ui_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-m", "gsenet", "ui", "--port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
