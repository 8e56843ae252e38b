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
