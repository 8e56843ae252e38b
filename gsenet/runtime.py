"""Where runs run: starting or joining Ray, and what every Ray Train worker process inherits.

Used by `gsenet train`, `gsenet search` (search/sweep.py), the tests and the benchmarks, so that
none of them imports the training module just to start Ray.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys

DEFAULT_STORAGE = "gsenet_runs"  # Ray Train / Tune results when train.storage_path is ""
DRIVER_RESOURCE = "TRAIN_DRIVER"  # custom resource of the non-preemptible node that hosts Train drivers
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a local Ray binds 127.0.0.1 only
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"  # where Ray's State API client (and Train's PG cleaner) ask
DASHBOARD_ATTEMPTS = 3  # local Ray starts tried when the dashboard's port is taken between pick and bind
_pinned_api_server: list[str | None] = []  # what API_SERVER_ENV was before init_ray set it (shutdown_ray)

RETRY_WINDOW_ENV = "GSENET_MLFLOW_RETRY_WINDOW_S"  # how long an MLflow outage is ridden out (gsenet.tracking)
# MLflow's HTTP client retries for minutes by default; a training worker should warn and move on.
WORKER_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# Train V2 routes a worker's print() to its logger *and* to the wrapped stdout: every line twice.
WORKER_ENV["RAY_TRAIN_ENABLE_PRINT_PATCH"] = "0"


def pin_ray_to_loopback() -> None:
    """Make the Ray that this process starts listen on 127.0.0.1 only (gcs_server, raylet, workers,
    dashboard agent), whatever was imported before.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when `ray` is first imported (any
    `import ray.tune` does it), and otherwise binds the machine's interface address even for a
    single-machine instance. So: set the variable for the processes Ray spawns, and when ray is
    already imported, also correct the constant it read (Ray looks it up at each use).
    """
    os.environ[RAY_LOOPBACK_ENV] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def init_ray(address: str = "", num_cpus: int | None = None) -> None:
    """Join a cluster (`address`, e.g. "auto", or $RAY_ADDRESS) or start a local Ray with TRAIN_DRIVER.

    Locally, Ray Train's placement-group cleaner asks the State API (the dashboard) whether a run's
    controller is alive; with no address it auto-detects the cluster and fails when the machine runs
    more than one Ray instance, leaking the run's CPUs/GPUs. So pin it to our own dashboard (the
    raylet and every worker inherit RAY_API_SERVER_ADDRESS from the driver), and use
    address="local" so we never attach to someone else's `ray start` cluster by accident.
    """
    address = address or os.environ.get("RAY_ADDRESS", "")
    if not address:
        pin_ray_to_loopback()
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
        return
    _pinned_api_server.append(os.environ.get(API_SERVER_ENV))
    for attempt in range(1, DASHBOARD_ATTEMPTS + 1):
        port = free_loopback_port()
        os.environ[API_SERVER_ENV] = f"http://127.0.0.1:{port}"
        try:
            ray.init(
                address="local",
                num_cpus=num_cpus,
                resources={DRIVER_RESOURCE: 100},
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=port,
            )
            return
        except Exception:
            # The port was free when picked and released for Ray to bind: on a busy machine another
            # process can take it in between, and the dashboard then fails to start. Only that is retried.
            if attempt == DASHBOARD_ATTEMPTS or not _port_taken(port):
                shutdown_ray()
                raise
            print(f"gsenet: Ray's dashboard port {port} was taken meanwhile; starting Ray again", file=sys.stderr)
            ray.shutdown()


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def shutdown_ray() -> None:
    """ray.shutdown(), and give back the State API address init_ray pinned: Ray's CLI and State API
    client let that variable override an explicit address, so a later cluster in this process (a
    test module, a notebook) must not inherit a dead one."""
    import ray

    ray.shutdown()
    while _pinned_api_server:
        before = _pinned_api_server.pop()
        if before is None:
            os.environ.pop(API_SERVER_ENV, None)
        else:
            os.environ[API_SERVER_ENV] = before


def worker_env() -> dict[str, str]:
    """WORKER_ENV plus the MLflow outage window when the driver's environment sets it."""
    extra = {RETRY_WINDOW_ENV: os.environ[RETRY_WINDOW_ENV]} if os.environ.get(RETRY_WINDOW_ENV) else {}
    return {**WORKER_ENV, **extra}


# Ray Train's controller checks its workers this often (Ray's default: 2 s), and each state change
# of a run (workers started, training finished, shut down) waits for a check.
CONTROLLER_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
CONTROLLER_POLL_S = "0.25"


def poll_train_workers_often() -> None:
    """Let the Train controller of every run this process starts check its workers every 0.25 s,
    unless the user set CONTROLLER_POLL_ENV. Ray passes the variable from the process that calls
    fit() to the controller (ENV_VARS_TO_PROPAGATE). A run's start-up and teardown waited up to 2 s
    per check: a stub run took 11.6 s from fit() to its return, 7.3 s at 0.25 s, with the same
    controller CPU (benchmarks/startup_speed.py)."""
    os.environ.setdefault(CONTROLLER_POLL_ENV, CONTROLLER_POLL_S)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
TRIM_THRESHOLD_BYTES = 1 << 30  # free memory at the heap's top beyond this still goes back to the OS


def reuse_freed_memory() -> bool:
    """Serve every allocation from glibc's heap and keep what is freed there for reuse.

    By default glibc gives each block over its mmap threshold (at most 32 MB: most activations of a
    training step at 1024/256) a fresh mapping and unmaps it when freed, so every step page-faults
    gigabytes in anew; in a VM each fault is dear. Measured on the 2-core VM (benchmarks/model_speed.py
    --allocator): fp32 training steps at 1024/256 4.46 -> 3.05 s (1.46x), peak RSS +17%. The setting is
    process-wide and applies to later allocations. Returns False (and changes nothing) where the C
    library has no mallopt (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
