"""`gsenet doctor [--data PATH|gs://...] [--mlflow-uri URI] [--address ADDR]`: is this machine ready to train?

Prints one line per check (ok / warn / FIX with what to do) and exits 1 when something blocks training.
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="", help="dataset to check: a folder or gs://bucket/prefix")
    parser.add_argument("--mlflow-uri", default="", help="tracking URI (default $MLFLOW_TRACKING_URI or ./mlruns.db)")
    parser.add_argument(
        "--address", default=os.environ.get("RAY_ADDRESS", ""), help="Ray cluster (default $RAY_ADDRESS)"
    )
    parser.add_argument("--cache-dir", default="", help="data cache (default $GSENET_CACHE_DIR or ~/.cache/gsenet)")


def run(args: argparse.Namespace) -> int:
    from gsenet.doctor import FIX, run_checks

    checks = run_checks(data=args.data, mlflow_uri=args.mlflow_uri, address=args.address, cache_dir=args.cache_dir)
    for check in checks:
        print(check.line(), flush=True)
    blocking = [c.name for c in checks if c.status == FIX]
    if blocking:
        print(f"\n{len(blocking)} problem(s) block training: {', '.join(blocking)}")
        return 1
    print("\nready to train")
    return 0
