"""`gsenet cluster render|up|down|status|submit|ui`: a GCP Ray cluster through Ray's own CLI.

    gsenet cluster render --project my-proj --bucket my-bucket [--gpu a100 --on-demand]
    gsenet cluster up                      # ray up CONFIG -y
    gsenet cluster ui                      # MLflow UI, Ray dashboard, optuna-dashboard on localhost
    gsenet cluster submit -- gsenet search --data gs://my-bucket/data --space default
    gsenet cluster status | down

Every action prints the `ray` commands it runs; `--dry-run` prints them and runs nothing, so
`ray up cluster/gcp.yaml` and friends stay usable directly.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from gsenet.mlflow_ui import ui_url

DEFAULT_CONFIG = "cluster/gsenet.yaml"  # what `render` writes; `up` etc. read it
UI_PORTS = {"MLflow UI": 5000, "Ray dashboard": 8265, "optuna-dashboard": 8080}
HEAD_OPTUNA_DB = "sqlite:////home/ray/state/optuna.db"  # on the head's persistent state folder
JOBS_ADDRESS = "http://127.0.0.1:8265"  # the Ray dashboard, forwarded by `gsenet cluster ui`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION")
    render = sub.add_parser("render", help="write a filled cluster YAML for your project and validate it")
    render.add_argument("--project", required=True, help="GCP project id")
    render.add_argument("--bucket", required=True, help="GCS bucket (MLflow artifacts, Ray results, data)")
    render.add_argument("--region", default="us-central1")
    render.add_argument("--zone", default="", help="default: REGION-a")
    render.add_argument("--gpu", choices=("l4", "a100"), default="l4", help="GPU worker type (default l4)")
    render.add_argument("--max-workers", type=int, default=8, help="cap on GPU VMs (default 8)")
    pricing = render.add_mutually_exclusive_group()
    pricing.add_argument("--spot", dest="spot", action="store_true", default=True, help="Spot GPU VMs (default)")
    pricing.add_argument("--on-demand", dest="spot", action="store_false", help="on-demand GPU VMs (never preempted)")
    render.add_argument("--out", default=DEFAULT_CONFIG, help=f"output YAML (default {DEFAULT_CONFIG})")
    render.add_argument("--force", action="store_true", help="replace an existing output file")
    for name, help_text in (
        ("up", "start or update the cluster (ray up)"),
        ("down", "delete every VM of the cluster (ray down)"),
        ("status", "nodes, pending demand and autoscaler state (ray status on the head)"),
        ("ui", "forward the MLflow UI, Ray dashboard and optuna-dashboard to localhost"),
        ("submit", "submit a command as a Ray Job: gsenet cluster submit -- gsenet search ..."),
    ):
        action = sub.add_parser(name, help=help_text, description=help_text)
        action.add_argument("--config", default=DEFAULT_CONFIG, help=f"cluster YAML (default {DEFAULT_CONFIG})")
        action.add_argument("--dry-run", action="store_true", help="print the ray commands, run nothing")
        if name == "ui":
            action.add_argument("--optuna-storage", default=HEAD_OPTUNA_DB, help="study DB on the head")
        if name == "submit":
            action.add_argument("--address", default=JOBS_ADDRESS, help=f"Ray Jobs API (default {JOBS_ADDRESS})")
            action.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    render.add_argument("--dry-run", action="store_true", help="print the YAML, write nothing")


def ray_cli() -> str:
    """The `ray` next to this Python (works without an activated venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.is_file() else shutil.which("ray") or "ray"


def run(args: argparse.Namespace) -> int:
    action = args.cluster_command
    if action == "render":
        return _render(args)
    if action is None:
        print("usage: gsenet cluster {render,up,down,status,ui,submit} ...  (see `gsenet cluster --help`)")
        return 2
    from gsenet.cluster_config import ClusterError

    config = args.config
    if action != "submit" and not args.dry_run and not Path(config).is_file():
        raise ClusterError(f"{config}: no cluster YAML; write one with `gsenet cluster render --project P --bucket B`")
    ray = ray_cli()
    if action == "up":
        return _run_all([[ray, "up", config, "-y"]], args.dry_run)
    if action == "down":
        return _run_all([[ray, "down", config, "-y"]], args.dry_run)
    if action == "status":
        return _run_all([[ray, "exec", config, "ray status"]], args.dry_run)
    if action == "ui":
        return _ui(ray, config, args)
    return _submit(ray, args)


def _run_all(commands: list[list[str]], dry_run: bool) -> int:
    for command in commands:
        print(f"$ {shlex.join(command)}", flush=True)
        if not dry_run:
            code = subprocess.call(command)
            if code:
                return code
    return 0


def _render(args: argparse.Namespace) -> int:
    import yaml

    from gsenet.cluster_config import ClusterError, render, write

    out = Path(args.out)
    if out.exists() and not args.force and not args.dry_run:
        raise ClusterError(f"{out} exists; pass --force to replace it, or --out another file")
    config = render(
        project=args.project,
        bucket=args.bucket,
        region=args.region,
        zone=args.zone,
        gpu=args.gpu,
        max_workers=args.max_workers,
        spot=args.spot,
    )
    if args.dry_run:
        print(yaml.safe_dump(config, sort_keys=False, width=120))
        return 0
    pricing = "--spot" if args.spot else "--on-demand"
    command = shlex.join(
        ["gsenet", "cluster", "render", "--project", args.project, "--bucket", args.bucket, "--region", args.region]
        + ["--gpu", args.gpu, "--max-workers", str(args.max_workers), pricing, "--out", str(out)]
    )
    write(config, out, command)
    worker = next(k for k in config["available_node_types"] if k != config["head_node_type"])
    print(
        f"wrote {out} (validated): head + up to {args.max_workers} x {worker} in {config['provider']['availability_zone']}"
    )
    print(f"next: gsenet cluster up --config {out}")
    return 0


def _ui(ray: str, config: str, args: argparse.Namespace) -> int:
    dashboard = f"optuna-dashboard {args.optuna_storage} --host 127.0.0.1 --port {UI_PORTS['optuna-dashboard']}"
    forward = [ray, "attach", config]
    for port in UI_PORTS.values():
        forward += ["-p", str(port)]
    for name, port in UI_PORTS.items():
        url = f"http://127.0.0.1:{port}"
        print(f"{name + ':':<18} {ui_url(url) if name == 'MLflow UI' else url}")
    # optuna-dashboard in a tmux session on the head (it keeps running), then one attach that forwards all three.
    return _run_all([[ray, "exec", config, "--tmux", dashboard], forward], args.dry_run)


def _submit(ray: str, args: argparse.Namespace) -> int:
    from gsenet.cluster_config import ClusterError

    entrypoint = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    if not entrypoint:
        raise ClusterError("nothing to submit: gsenet cluster submit -- gsenet search --data gs://... --space default")
    command = [ray, "job", "submit", "--address", args.address, "--no-wait", "--", *entrypoint]
    print(f"$ {shlex.join(command)}", flush=True)
    if args.dry_run:
        print(f"follow it: {shlex.join([ray, 'job', 'logs', '--address', args.address, '--follow', 'JOB_ID'])}")
        return 0
    # Ray lets RAY_API_SERVER_ADDRESS / RAY_ADDRESS override --address; the address given here wins.
    env = {**os.environ, "RAY_API_SERVER_ADDRESS": args.address}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode:
        raise ClusterError(
            f"ray job submit failed ({done.returncode}); is the dashboard forwarded (`gsenet cluster ui`) "
            f"and reachable at {args.address}?"
        )
    job_id = _job_id(done.stdout + done.stderr)
    print(f"submitted job {job_id}; follow it with:")
    print(f"  {shlex.join([ray, 'job', 'logs', '--address', args.address, '--follow', job_id])}")
    print(f"  {shlex.join([ray, 'job', 'status', '--address', args.address, job_id])}")
    return 0


def _job_id(output: str) -> str:
    import re

    match = re.search(r"Job '([^']+)' submitted successfully", output) or re.search(r"(raysubmit_\w+)", output)
    return match.group(1) if match else "JOB_ID"
