"""One local Ray instance for all of tests/faults (each start costs ~10 s on 2 loaded cores).

Tests that need a Ray of their own (a `gsenet` driver process that is killed, a tmpfs namespace)
start it in their subprocess; the ones that share this one take `ray_local` (the GCS address).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def ray_local() -> Iterator[str]:
    import ray

    from gsenet.runtime import init_ray

    if ray.is_initialized():
        ray.shutdown()
    init_ray(num_cpus=2)  # the same start-up as `gsenet train` / `gsenet search` (TRAIN_DRIVER, own dashboard)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        # init_ray pins the State API to this instance's dashboard; later modules' clusters must not inherit it.
        os.environ.pop("RAY_API_SERVER_ADDRESS", None)
