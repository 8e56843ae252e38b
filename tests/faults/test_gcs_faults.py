"""gs:// data faults against a real GCS emulator (fake-gcs-server) and a closed loopback port.

- every command (train, evaluate, data fetch) gives up on an unreachable endpoint after
  `data.gcs_timeout_s`, not the library's 60 s;
- a full cache disk during a fetch says "no space left on <cache dir>" (a tmpfs in a private mount
  namespace), not "cannot reach the emulator", and leaves no partial file.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.gcs import gcs_emulator  # noqa: F401
from fixtures.mlflow_server import free_port
from fixtures.recordings import make_dataset

from faults.test_disk_full import namespace_prefix
from gsenet.errors import StorageError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 2.0
SAYS_TIMEOUT = f"Timeout of {TIMEOUT_S}s exceeded"  # google.api_core's retry: our deadline, not its 60 s


@pytest.fixture
def unreachable(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens there


def test_train_honours_gcs_timeout(unreachable, tmp_path):
    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.train import build_trainer

    cfg = apply_overrides(
        ExperimentConfig(),
        {"data.path": "gs://nowhere/data", "data.gcs_timeout_s": TIMEOUT_S, "data.cache_dir": str(tmp_path)},
    )
    with pytest.raises(StorageError, match=SAYS_TIMEOUT):
        build_trainer(cfg)  # the dataset is fetched (and checked) before anything starts


def test_data_fetch_and_evaluate_honour_gcs_timeout(unreachable, tmp_path, capsys):
    import dataclasses
    import json

    from gsenet.cli import main
    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.model import GSENet
    from gsenet.train import save_checkpoint

    assert (
        main(["data", "fetch", "gs://nowhere/data", f"data.gcs_timeout_s={TIMEOUT_S}", "--cache-dir", str(tmp_path)])
        == 1
    )
    assert SAYS_TIMEOUT in capsys.readouterr().err

    cfg = apply_overrides(ExperimentConfig(), {"model.widths": [4, 4, 8, 8, 8, 8], "data.gcs_timeout_s": TIMEOUT_S})
    state = {"model": GSENet(cfg.model).state_dict(), "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
    save_checkpoint(tmp_path / "ckpt", state, cfg)
    assert main(["evaluate", str(tmp_path / "ckpt"), "gs://nowhere/data", "--no-perceptual"]) == 1
    assert SAYS_TIMEOUT in capsys.readouterr().err  # the checkpoint's data.gcs_timeout_s


def test_a_full_cache_disk_during_a_fetch_says_no_space_left(gcs_emulator, tmp_path):  # noqa: F811
    from gsenet.storage import gcs_client, upload_directory

    prefix = namespace_prefix(tmp_path)
    data = make_dataset(tmp_path / "ds", n_per_split=2, seconds=1.2, n_mics=2, seed=1)  # ~0.9 MB in 24 objects
    gcs_client().create_bucket("full")
    upload_directory(data, "gs://full/v1")
    cache, listing = tmp_path / "cache", tmp_path / "listing.txt"
    cache.mkdir()
    fetch = [sys.executable, "-m", "gsenet", "data", "fetch", "gs://full/v1", "--cache-dir", str(cache)]
    script = (
        f"mount -t tmpfs -o size=200k tmpfs {cache} || exit 99; {shlex.join(fetch)}; rc=$?; "
        f"find {cache} -type f > {listing}; exit $rc"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*prefix, "sh", "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no space left on" in done.stderr and str(cache) in done.stderr, done.stderr
    assert "cannot reach" not in done.stderr
    assert ".partial-" not in listing.read_text()  # no half-downloaded object left behind
