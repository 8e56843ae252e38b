"""Disk full while checkpointing, on a real `gsenet train` whose storage is a tiny tmpfs.

The run's storage (train.storage_path) is a tmpfs with room for one checkpoint, mounted in a
private mount namespace (`unshare -m`; `unshare -rm` when not root), so nothing is mounted on the
machine and it vanishes with the process. Epoch 1's checkpoint fits, epoch 2's does not: the run
must stop at once (not retried) with "no space left on <folder>", leave nothing half-written, and
keep epoch 1's checkpoint loadable.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.recordings import make_dataset

from gsenet.checkpoint import problem

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
TMPFS_SIZE = "400k"  # a checkpoint of the model below is ~245 kB: one fits, two do not


def namespace_prefix(tmp_path: Path) -> list[str]:
    """`unshare` arguments under which `mount -t tmpfs` works here, or skip."""
    probe = tmp_path / "probe"
    probe.mkdir()
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        if shutil.which(prefix[0]) is None:
            break
        done = subprocess.run([*prefix, "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"], capture_output=True)
        if done.returncode == 0:
            return prefix
    pytest.skip("cannot mount a tmpfs in a private mount namespace here (unshare -m / -rm refused)")


def test_disk_full_while_checkpointing_is_one_clear_error_and_keeps_the_previous_checkpoint(tmp_path):
    from gsenet.inference import load_model

    prefix = namespace_prefix(tmp_path)
    data = make_dataset(tmp_path / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=5)
    store, kept = tmp_path / "store", tmp_path / "kept"
    store.mkdir()
    kept.mkdir()
    train = [
        sys.executable, "-m", "gsenet", "train", "--data", str(data), "--storage", str(store), "--name", "full",
        "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "data.segment_seconds=0.5", "data.batch_size=2", "data.val_max_recordings=1",
        "model.widths=[4,4,8,8,8,8]", "model.dilation_depth=1", "train.epochs=2", "train.steps_per_epoch=3",
        "train.metric_subset=1", "train.keep_checkpoints=5", "train.max_failures=2",
    ]  # fmt: skip
    script = (
        f"mount -t tmpfs -o size={TMPFS_SIZE} tmpfs {store} || exit 99; {shlex.join(train)}; rc=$?; "
        f"cp -a {store}/. {kept}/; exit $rc"  # the tmpfs goes with the namespace: keep what it held
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([*prefix, "sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-4000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("gsenet train: error:")]
    assert len(error) == 1 and "no space left on" in error[0] and str(store / "full") in error[0], out[-4000:]
    attempts = {re.search(r"pid=(\d+)", line).group(1) for line in out.splitlines() if "from scratch" in line}
    assert len(attempts) == 1, out[-4000:]  # failed at once, not retried train.max_failures times

    run = kept / "full"
    assert sorted(p.name for p in run.glob("checkpoint_0*")) == ["checkpoint_00000003"]  # nothing half-written
    assert not list(run.glob(".staging-*"))
    assert problem(run / "checkpoint_00000003") is None  # the previous checkpoint is intact
    _, cfg = load_model(run)
    assert cfg.train.epochs == 2
