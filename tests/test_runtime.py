"""gsenet.runtime: a local Ray pins the State API to its own dashboard, and shutdown_ray gives the
previous address back (Ray's CLI and State API client let it override an explicit address);
reuse_freed_memory keeps freed tensors' pages, counted by the kernel's page-fault counter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.timeout(300)]

# A training step's pattern at its coarsest: three 64 MB activations (above glibc's largest mmap
# threshold, 32 MB) allocated, written and freed, ten times; prints the fewest minor page faults of
# the last four rounds. The heap needs a few rounds to settle (posix_memalign's slack fragments it).
FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    if sys.argv[1] == "reuse":
        from gsenet.runtime import reuse_freed_memory
        assert reuse_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    rounds = []
    for _ in range(10):
        before = faults()
        activations = [torch.ones(16 << 20) for _ in range(3)]
        rounds.append(faults() - before)
        del activations
    print(min(rounds[-4:]))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_reuse_freed_memory_spares_the_page_faults_of_reallocated_tensors():
    def page_faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1])

    pages = 3 * (64 << 20) // os.sysconf("SC_PAGE_SIZE")  # one round's memory
    assert page_faults("default") > pages // 2  # glibc maps each block afresh, every round
    assert page_faults("reuse") < pages // 50  # the heap keeps the freed blocks' pages


@pytest.mark.slow
def test_shutdown_ray_restores_the_state_api_address_init_ray_pinned(monkeypatch):
    import ray

    from gsenet.runtime import API_SERVER_ENV, init_ray, shutdown_ray

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv(API_SERVER_ENV, "http://127.0.0.1:1")  # whatever the user had set
    init_ray(num_cpus=1)
    try:
        pinned = os.environ[API_SERVER_ENV]
        assert pinned != "http://127.0.0.1:1" and pinned.startswith("http://127.0.0.1:")
        dashboard = (
            ray.get_runtime_context().dashboard_url if hasattr(ray.get_runtime_context(), "dashboard_url") else None
        )
        assert dashboard is None or pinned.endswith(dashboard.rsplit(":", 1)[-1])
    finally:
        shutdown_ray()
    assert not ray.is_initialized()
    assert os.environ[API_SERVER_ENV] == "http://127.0.0.1:1"


def test_a_dashboard_port_taken_between_pick_and_bind_starts_ray_again(monkeypatch, capfd):
    """init_ray picks a free port and releases it for Ray's dashboard to bind; on a busy machine another
    process can take it in between. Here one does (a listening socket), and init_ray starts again."""
    import socket

    import ray

    from gsenet import runtime

    if ray.is_initialized():
        ray.shutdown()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    picks = iter([taken])
    real_pick = runtime.free_loopback_port
    monkeypatch.setattr(runtime, "free_loopback_port", lambda: next(picks, None) or real_pick())
    try:
        runtime.init_ray(num_cpus=1)
        assert ray.is_initialized()
        assert os.environ[runtime.API_SERVER_ENV] != f"http://127.0.0.1:{taken}"
        assert f"dashboard port {taken} was taken meanwhile" in capfd.readouterr().err
    finally:
        runtime.shutdown_ray()
        squatter.close()


def test_train_controllers_poll_their_workers_often_unless_the_user_chose(monkeypatch):
    from ray.train.v2._internal import constants

    from gsenet.runtime import CONTROLLER_POLL_ENV, poll_train_workers_often

    # Ray reads this variable and hands it from fit()'s process to the controller it starts.
    assert CONTROLLER_POLL_ENV == constants.HEALTH_CHECK_INTERVAL_S_ENV_VAR
    assert CONTROLLER_POLL_ENV in constants.ENV_VARS_TO_PROPAGATE
    monkeypatch.delenv(CONTROLLER_POLL_ENV, raising=False)
    poll_train_workers_often()
    assert os.environ[CONTROLLER_POLL_ENV] == "0.25"
    monkeypatch.setenv(CONTROLLER_POLL_ENV, "3")
    poll_train_workers_often()
    assert os.environ[CONTROLLER_POLL_ENV] == "3"
