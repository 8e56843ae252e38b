"""Every Ray process a gsenet sweep starts listens on loopback only, whatever imported ray first.

The driver runs in a subprocess with a clean environment (no RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER from
conftest) and imports `ray.tune` before anything else, as `search.progress` does: the import order
that used to put gcs_server, raylet and the workers on *:port. The test reads the kernel's
listening sockets of the driver's process tree while the real sweep runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from faults.sockets import descendants, is_loopback, listening

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
ROOT = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent(
    """
    import sys
    import ray.tune  # first, as search.progress does: Ray reads its settings at this import
    from search.space import load_space
    from search.surrogate import paced_surrogate
    from search.sweep import new_plan, run_sweep

    space = load_space("smoke")
    settings = space.settings(num_samples=2, max_concurrent=2, grace_period=1, seed=0)
    plan = new_plan(space, settings, name="loopback", storage_path=sys.argv[1],
                    cli_fixed={"train.epochs": 3}, mlflow_uri=sys.argv[2])
    report = run_sweep(plan, trial_fn=paced_surrogate(1.0), num_cpus=2, interval_s=600)
    print("TRIALS", len(report.rows))
    """
)


def test_sweep_ray_processes_listen_on_loopback_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ENABLE_WINDOWS", "RAY_ADDRESS"))}
    env["PYTHONPATH"] = str(ROOT)
    log_path = tmp_path / "driver.log"
    with open(log_path, "wb") as log:
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(tmp_path / "runs"), f"sqlite:///{tmp_path / 'mlflow.db'}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        seen: set[tuple[str, str]] = set()
        try:
            while driver.poll() is None:
                seen |= listening(descendants(driver.pid))
                time.sleep(0.5)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(30)
    output = log_path.read_text(errors="replace")
    assert driver.returncode == 0, output[-3000:]
    assert "TRIALS 2" in output  # the sweep ran to the end while we watched
    names = {name for _, name in seen}
    # The processes that used to listen on *:port were all seen, so the check had something to check.
    assert {"gcs_server", "raylet"} <= names, seen
    assert any(name.startswith("ray::") for name in names), seen  # workers / agents
    exposed = sorted(item for item in seen if not is_loopback(item[0]))
    assert not exposed, f"Ray listens beyond loopback: {exposed}"
