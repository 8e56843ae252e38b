"""`gsenet ui [--mlflow-uri URI] [--port 5000]`: the MLflow UI on 127.0.0.1 for the tracking store.

With no URI it serves the local store that `gsenet train` writes by default (./mlruns.db with
artifacts in ./mlartifacts), so no server is needed to look at runs, listen to audio and compare.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow-uri", default="", help="backend store (default $MLFLOW_TRACKING_URI or ./mlruns.db)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    from gsenet.errors import TrackingError
    from gsenet.tracking import DEFAULT_ARTIFACTS_DIR, resolve_tracking_uri

    uri = resolve_tracking_uri(args.mlflow_uri)
    if uri.startswith(("http://", "https://")):
        raise TrackingError(f"{uri} is already a server: open it in a browser instead of `gsenet ui`")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--artifacts-destination", DEFAULT_ARTIFACTS_DIR, "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI for {uri} on http://{args.host}:{args.port} (Ctrl-C to stop)")
    return subprocess.call(command)
