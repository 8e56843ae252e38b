"""Shared test settings. Service fixtures (Ray, MLflow server, GCS emulator) live in tests/fixtures/."""

import os
import secrets
import tempfile

# Every Ray process the tests start (ray.init, `ray start` nodes, `gsenet` subprocesses) stays on
# 127.0.0.1: without this Ray binds the machine's interface address even for a local instance.
# Set before anything imports ray, which reads it once.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Token authentication with one token for the whole run, so every Ray process the tests start
# agrees on it (Ray turns it on for local clusters when ~/.ray/auth_token exists, which would make
# test outcomes depend on the machine's home folder).
_token_dir = tempfile.mkdtemp(prefix="gsenet-ray-token-")
with open(os.path.join(_token_dir, "auth_token"), "w") as _token_file:
    _token_file.write(secrets.token_hex(32))
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN_PATH", os.path.join(_token_dir, "auth_token"))

import torch  # noqa: E402

# Two cores in CI: keep torch from oversubscribing them while Ray workers also run.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
