"""Checkpoint folders on disk: a partial, truncated or garbled one is refused by its manifest, and
`load_model(<run folder>)` takes the newest complete, valid one (fast: no Ray)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gsenet.checkpoint import MANIFEST, newest_valid, problem, read_checkpoint
from gsenet.config import ExperimentConfig, apply_overrides
from gsenet.errors import ModelLoadError
from gsenet.inference import load_model
from gsenet.model import GSENet
from gsenet.train import save_checkpoint

WIDTHS = [4, 8, 8, 8, 16, 16]


def write_run(run, steps=(3, 6, 9)):
    """A run folder with one checkpoint per step; each has different weights (seeded by step)."""
    cfg = apply_overrides(ExperimentConfig(), {"model.widths": WIDTHS, "model.dilation_depth": 1})
    states = {}
    for step in steps:
        torch.manual_seed(step)
        model = GSENet(cfg.model)
        state = {"model": model.state_dict(), "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
        save_checkpoint(run / f"checkpoint_{step:08d}", state, cfg)
        states[step] = {k: v.clone() for k, v in model.state_dict().items()}
    return states


def same_weights(model, state) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def garble(path, offset_fraction=0.6, count=16):
    """Flip bytes inside the tensor data, keeping the size (what a bad disk or copy does)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * offset_fraction)
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    path.write_bytes(bytes(data))


def test_a_written_checkpoint_verifies_and_loads(tmp_path):
    states = write_run(tmp_path / "run", steps=(3,))
    folder = tmp_path / "run" / "checkpoint_00000003"
    assert problem(folder) is None
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "config.yaml", MANIFEST]  # no temp files
    model, cfg = load_model(folder)
    assert same_weights(model, states[3]) and list(cfg.model.widths) == WIDTHS


@pytest.mark.parametrize("damage", ["truncated", "garbled", "no_manifest", "empty_file"])
def test_a_damaged_latest_checkpoint_is_named_and_the_previous_one_is_loaded(tmp_path, damage, capsys):
    run = tmp_path / "run"
    states = write_run(run)
    latest = run / "checkpoint_00000009"
    weights = latest / "checkpoint.pt"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbled":
        garble(weights)
    elif damage == "no_manifest":
        (latest / MANIFEST).unlink()  # a copy cut short before its last file
    else:
        weights.write_bytes(b"")
    reason = problem(latest)
    assert reason is not None and "checkpoint_00000009" in reason
    expected = {"truncated": "truncated", "garbled": "sha256", "no_manifest": "unfinished", "empty_file": "truncated"}
    assert expected[damage] in reason
    with pytest.raises(ModelLoadError, match="checkpoint_00000009"):
        read_checkpoint(latest)
    assert newest_valid(run) == (run / "checkpoint_00000006", [reason])

    model, _ = load_model(run)
    assert same_weights(model, states[6])  # the newest valid one, not the damaged newest
    assert "checkpoint_00000009" in capsys.readouterr().out
    if damage != "no_manifest":  # asked for by name, a folder with no manifest loads as an older gsenet's
        with pytest.raises(ModelLoadError, match="not a usable checkpoint"):
            load_model(latest)  # refused, not loaded silently


def test_a_garbled_tensor_is_refused_not_loaded_as_huge_weights(tmp_path):
    run = tmp_path / "run"
    write_run(run, steps=(3,))
    garble(run / "checkpoint_00000003" / "checkpoint.pt", 0.8, 4)
    with pytest.raises(ModelLoadError, match="sha256"):
        load_model(run / "checkpoint_00000003")
    with pytest.raises(ModelLoadError, match="no complete, valid checkpoint"):
        load_model(run)


def test_newer_generation_after_a_fall_back_wins_over_the_corrupt_line(tmp_path):
    run = tmp_path / "run"
    states = write_run(run, steps=(3, 6))
    garble(run / "checkpoint_00000006" / "checkpoint.pt")
    cfg = apply_overrides(ExperimentConfig(), {"model.widths": WIDTHS, "model.dilation_depth": 1})
    torch.manual_seed(60)
    model = GSENet(cfg.model)
    state = {"model": model.state_dict(), "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
    save_checkpoint(run / "checkpoint_00000006_g1", state, cfg)
    loaded, _ = load_model(run)
    assert same_weights(loaded, model.state_dict()) and not same_weights(loaded, states[6])


def test_checkpoints_of_an_older_gsenet_without_manifest_still_load(tmp_path):
    run = tmp_path / "run"
    states = write_run(run, steps=(3, 6))
    for step in (3, 6):
        (run / f"checkpoint_{step:08d}" / MANIFEST).unlink()
    model, _ = load_model(run)
    assert same_weights(model, states[6])


def test_resuming_from_remote_storage_reads_a_private_copy_not_rays_shared_download(tmp_path):
    """Ray's `as_directory()` downloads a remote checkpoint into one folder per checkpoint that all
    ranks on a node share, and the last reader out deletes it: in CI (gs://) rank 1 found it empty
    while rank 0 removed it, and the run failed "no usable checkpoint". Here another process holds
    Ray's lock on that shared folder and leaves it empty, as the removing rank did; resuming must
    still read the checkpoint's own weights."""
    import subprocess
    import sys

    import pyarrow.fs
    import ray.train

    from gsenet.train import load_checkpoint

    states = write_run(tmp_path / "run", steps=(4,))
    remote = pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())  # not "local"
    checkpoint = ray.train.Checkpoint("run/checkpoint_00000004", filesystem=remote)
    shared = checkpoint._get_temporary_checkpoint_dir()
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import os, sys, time\n"
            "from ray.air._internal.filelock import TempFileLock\n"
            f"os.makedirs({shared!r}, exist_ok=True)\n"
            f"with TempFileLock({shared!r}, timeout=0):\n"
            "    print('held', flush=True); time.sleep(3)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        state = load_checkpoint(checkpoint)
    finally:
        holder.wait(30)
    assert all(torch.equal(v, states[4][k]) for k, v in state["model"].items())
