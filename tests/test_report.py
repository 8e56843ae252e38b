"""search/report.py: the checkpoint a sweep's table names for a trial's best epoch."""

from __future__ import annotations

import json
import shutil

import torch

from gsenet.checkpoint import write_checkpoint
from search.report import train_run_checkpoint


def kept_run(folder, scores: dict[int, float]):
    """A Train run folder as Ray leaves it: one gsenet checkpoint per epoch and the snapshot that
    lists each with the metrics it was reported with."""
    results = []
    for epoch, score in scores.items():
        name = f"checkpoint_{epoch * 10:08d}"
        write_checkpoint(folder / name, {"model": {"w": torch.zeros(2)}, "epoch": epoch})
        results.append({"checkpoint_dir_name": name, "metrics": {"epoch": epoch, "val_si_sdr": score}})
    (folder / "checkpoint_manager_snapshot.json").write_text(json.dumps({"checkpoint_results": results}))
    return folder


def test_the_best_epochs_checkpoint_is_found_in_the_train_run(tmp_path):
    run = kept_run(tmp_path / "sweep-t1", {1: 3.0, 2: 5.0, 3: 4.0})
    assert train_run_checkpoint(str(run), 2, "val_si_sdr", "max") == str(run / "checkpoint_00000020")
    # The epoch's own checkpoint comes first, even when another scored better.
    assert train_run_checkpoint(str(run), 3, "val_si_sdr", "max") == str(run / "checkpoint_00000030")


def test_a_deleted_or_damaged_one_falls_back_to_the_best_complete_one(tmp_path):
    run = kept_run(tmp_path / "sweep-t1", {1: 3.0, 2: 5.0, 3: 4.0})
    shutil.rmtree(run / "checkpoint_00000020")  # Ray deleted it (keep_checkpoints)
    (run / "checkpoint_00000030" / "manifest.json").unlink()  # cut short
    assert train_run_checkpoint(str(run), 2, "val_si_sdr", "max") == str(run / "checkpoint_00000010")
    assert train_run_checkpoint(str(run), 2, "val_si_sdr", "min") == str(run / "checkpoint_00000010")


def test_no_snapshot_or_nothing_left_is_none(tmp_path):
    assert train_run_checkpoint(str(tmp_path / "missing"), 1, "val_si_sdr", "max") == ""
    run = kept_run(tmp_path / "sweep-t1", {1: 3.0})
    shutil.rmtree(run / "checkpoint_00000010")
    assert train_run_checkpoint(str(run), 1, "val_si_sdr", "max") == ""
    (run / "checkpoint_manager_snapshot.json").write_text("{not json")
    assert train_run_checkpoint(str(run), 1, "val_si_sdr", "max") == ""
