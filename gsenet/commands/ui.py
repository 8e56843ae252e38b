"""`gsenet ui [--mlflow-uri URI] [--port 5000] [--host 127.0.0.1] [--workers 1]`: the MLflow UI.

With no URI it serves the local store that `gsenet train` writes by default (./mlruns.db with
artifacts in ./mlartifacts), so no server is needed to look at runs, listen to audio and compare.
One worker by default: MLflow's default of 4 uvicorn workers can take minutes to come up on a busy
2-core machine (or die while starting), and one is plenty for one person's browser.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from gsenet.mlflow_ui import ui_url

GRACEFUL_SHUTDOWN_S = 3  # uvicorn's wait for open requests on SIGTERM; we SIGKILL a little later


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow-uri", default="", help="backend store (default $MLFLOW_TRACKING_URI or ./mlruns.db)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")


class _Stop(Exception):
    """Raised from the SIGTERM handler so the server is stopped by the same path as Ctrl-C."""


def run(args: argparse.Namespace) -> int:
    from gsenet.errors import GSENetError, TrackingError
    from gsenet.tracking import DEFAULT_ARTIFACTS_DIR, resolve_tracking_uri

    uri = resolve_tracking_uri(args.mlflow_uri)
    if uri.startswith(("http://", "https://")):
        raise TrackingError(f"{uri} is already a server: open it in a browser instead of `gsenet ui`")
    if args.workers < 1:
        raise GSENetError(f"--workers {args.workers}: must be at least 1")
    _check_port_free(args.host, args.port)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--artifacts-destination", DEFAULT_ARTIFACTS_DIR, "--host", args.host, "--port", str(args.port)]
    command += ["--workers", str(args.workers), "--uvicorn-opts", f"--timeout-graceful-shutdown {GRACEFUL_SHUTDOWN_S}"]
    url = f"http://{args.host}:{args.port}"
    print(f"MLflow UI for {uri}: starting on {url} (Ctrl-C to stop)", flush=True)
    # Its own process group, so stopping reaches the server's workers too and nothing is left behind.
    server = subprocess.Popen(command, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        return _serve(server, url)
    except (KeyboardInterrupt, _Stop):
        _stop(server)
        print("gsenet ui: stopped", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(server)


def _raise_stop(signum, frame) -> None:
    raise _Stop()


def _serve(server: subprocess.Popen, url: str) -> int:
    """Wait for the server; say once when it answers (the first start can take a while)."""
    ready = False
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return server.wait(timeout=1.0)
        if not ready and _answers(f"{url}/health"):
            ready = True
            print(f"MLflow UI ready: {url}  (training runs: {ui_url(url)})", flush=True)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _check_port_free(host: str, port: int) -> None:
    from gsenet.errors import GSENetError

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise GSENetError(
                f"cannot listen on {host}:{port} ({exc.strerror}); is another UI running? pick another --port"
            ) from None


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it has not exited shortly after."""
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACEFUL_SHUTDOWN_S + 2
    while server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # also reaches workers whose parent already exited
    server.wait()
