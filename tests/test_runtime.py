"""gsenet.runtime: a local Ray pins the State API to its own dashboard, and shutdown_ray gives the
previous address back (Ray's CLI and State API client let it override an explicit address)."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


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
