"""`gsenet doctor`: is this machine ready to train? One line per check, each ok / warn / FIX.

Versions, CPU/GPU/threads, the Ray cluster in RAY_ADDRESS, the MLflow tracking URI, GCS credentials
and the bucket (when --data gs://... is given) and disk space for the data cache. FIX lines block
training (the command then exits 1); warn lines are worth knowing. Every check is quick and bounded
by a timeout; nothing here starts Ray or writes anything.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FIX = "ok", "warn", "FIX"
CACHE_WARN_GB = 10.0  # free space below this in the data cache: warn
CACHE_FIX_GB = 1.0  # ... below this: training will fail while caching


@dataclass
class Check:
    name: str
    status: str  # OK | WARN | FIX
    detail: str  # what was found; for WARN / FIX also what to do

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<10}  {self.detail}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def check_versions() -> list[Check]:
    checks = [Check("python", OK, f"{platform.python_version()} ({platform.platform(terse=True)})")]
    for package, why in (
        ("torch", "the model"),
        ("ray", "training and sweeps"),
        ("mlflow", "tracking"),
        ("optuna", "sweeps"),
    ):
        version = _version(package)
        checks.append(
            Check(package, OK, version)
            if version
            else Check(package, FIX, f"not installed (needed for {why}): `pip install -e .` in the project folder")
        )
    return checks


def check_compute() -> list[Check]:
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    threads = torch.get_num_threads()
    detail = f"{cpus} usable core(s), load {load:.1f}, torch uses {threads} thread(s)"
    checks = [
        Check("cpu", WARN if load > 1.5 * cpus else OK, detail + ("; the machine is busy" if load > 1.5 * cpus else ""))
    ]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        checks.append(Check("gpu", OK, f"CUDA {torch.version.cuda}: {len(names)} x {', '.join(sorted(set(names)))}"))
    else:
        built = f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch build"
        checks.append(Check("gpu", OK, f"none visible ({built}); train with train.gpus_per_worker=0"))
    return checks


def _tcp_reachable(host: str, port: int, timeout: float) -> str:
    """ "" when a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as exc:
        return exc.strerror or str(exc)


def check_ray(address: str, timeout: float = 3.0) -> Check:
    """The cluster in `address` (RAY_ADDRESS) answers on its port; no address: a local Ray is started."""
    if not address:
        return Check("cluster", OK, "no RAY_ADDRESS: `gsenet train` / `search` start a local Ray on 127.0.0.1")
    if address == "auto":
        current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        if not current.is_file():
            return Check(
                "cluster", FIX, "RAY_ADDRESS=auto but no cluster was started on this machine: `ray start --head`"
            )
        address = current.read_text().strip()
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port_text = target.rpartition(":")
    if not host or not port_text.isdigit():
        return Check("cluster", FIX, f"RAY_ADDRESS={address!r} is not HOST:PORT (e.g. 10.0.0.2:6379 or auto)")
    problem = _tcp_reachable(host, int(port_text), timeout)
    if problem:
        return Check(
            "cluster",
            FIX,
            f"{address}: not reachable ({problem}); start the cluster (`gsenet cluster up`) or unset RAY_ADDRESS",
        )
    return Check("cluster", OK, f"{address} answers")


def check_mlflow(uri: str, timeout: float = 3.0) -> Check:
    from gsenet.preflight import tracking_server_problem

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        return Check("tracking", OK, "no tracking URI: runs go to ./mlruns.db (open it with `gsenet ui`)")
    if uri.startswith(("http://", "https://")):
        problem = tracking_server_problem(uri, timeout)
        if problem:
            return Check(
                "tracking",
                FIX,
                f"{uri}: not reachable ({problem}); start the server, fix MLFLOW_TRACKING_URI, or unset it for ./mlruns.db",
            )
        return Check("tracking", OK, f"{uri} answers /health")
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).expanduser().resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return Check("tracking", FIX, f"{uri}: folder {folder} is missing or not writable")
        return Check("tracking", OK, f"{uri} (local SQLite store)")
    return Check("tracking", OK, uri)


def check_gcs(data: str, timeout: float = 10.0) -> list[Check]:
    """Credentials present and the bucket/prefix readable (lists one object)."""
    from gsenet.errors import StorageError
    from gsenet.storage import _retry, _storage_error, emulator_host, gcs_client, parse_gcs_uri

    try:
        bucket, prefix = parse_gcs_uri(data)
        client = gcs_client()  # raises StorageError naming the fix when there are no credentials
    except StorageError as exc:
        return [Check("gcs-auth", FIX, str(exc))]
    how = f"emulator at {emulator_host()}" if emulator_host() else "Application Default Credentials"
    checks = [Check("gcs-auth", OK, how)]
    try:
        blobs = list(client.list_blobs(bucket, prefix=prefix, max_results=1, timeout=timeout, retry=_retry(timeout)))
    except Exception as exc:
        return checks + [Check("gcs-data", FIX, str(_storage_error(exc, data)))]
    if not blobs:
        return checks + [Check("gcs-data", FIX, f"{data}: no objects under this prefix; check the path")]
    return checks + [Check("gcs-data", OK, f"{data} is readable")]


def check_data(data: str) -> list[Check]:
    if not data:
        return []
    if data.startswith("gs://"):
        return check_gcs(data)
    root = Path(data).expanduser()
    if not root.is_dir():
        return [Check("data", FIX, f"{root}: no such folder; `gsenet simulate {data}` or fix --data")]
    return [Check("data", OK, f"{root.resolve()} exists (run `gsenet data check {data}` for a full lint)")]


def check_cache(cache_dir: str = "") -> Check:
    from gsenet.storage import cache_root

    folder = cache_root(cache_dir)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    free_gb = shutil.disk_usage(existing).free / 1e9
    detail = f"{folder}: {free_gb:.1f} GB free"
    if free_gb < CACHE_FIX_GB:
        return Check("cache", FIX, f"{detail}; free space or set data.cache_dir / GSENET_CACHE_DIR to a bigger disk")
    if free_gb < CACHE_WARN_GB:
        return Check("cache", WARN, f"{detail}; a real dataset may not fit")
    return Check("cache", OK, detail)


def run_checks(*, data: str = "", mlflow_uri: str = "", address: str = "", cache_dir: str = "") -> list[Check]:
    steps: list[Callable[[], Check | list[Check]]] = [
        check_versions,
        check_compute,
        lambda: check_ray(address),
        lambda: check_mlflow(mlflow_uri),
        lambda: check_data(data),
        lambda: check_cache(cache_dir),
    ]
    checks: list[Check] = []
    for step in steps:
        result = step()
        checks += result if isinstance(result, list) else [result]
    return checks
