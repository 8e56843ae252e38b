"""Checkpoint folders that are either whole and verified, or not checkpoints at all.

    checkpoint_00000024/
        checkpoint.pt    torch state (model, optimizer, scheduler, progress, config)
        config.yaml      the resolved ExperimentConfig
        manifest.json    written LAST: {"files": {name: {"bytes": n, "sha256": hex}}}

Each file is written to a temporary name, flushed to disk and renamed, and the manifest comes
last, so a folder cut short (a killed process, a full disk, an interrupted upload) has no manifest
or files that do not match it; garbled bytes fail the checksum. Readers take the newest folder
that verifies and say which newer ones they skipped and why. Nothing here knows about Ray.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from gsenet.errors import DiskFullError, ModelLoadError

CHECKPOINT_FILE = "checkpoint.pt"
MANIFEST = "manifest.json"
FOLDER_PREFIX = "checkpoint_"
_FOLDER_NAME = re.compile(r"checkpoint_(\d+)(?:_g(\d+))?")


class CorruptCheckpointError(ModelLoadError):
    """A checkpoint folder is partial, truncated or garbled (it fails its manifest)."""


def is_no_space(exc: BaseException) -> bool:
    """ENOSPC, also when a library (pyarrow) only says it in the message."""
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc)


def no_space_error(where: str | Path, exc: BaseException) -> DiskFullError:
    return DiskFullError(
        f"no space left on {where} ({exc}); free space there or point train.storage_path elsewhere, "
        f"then rerun the same command to resume from the last complete checkpoint"
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> dict:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"bytes": len(data), "sha256": _sha256(data)}


def write_checkpoint(folder: str | Path, state: dict, texts: dict[str, str] | None = None) -> Path:
    """`state` as checkpoint.pt plus text files, then the manifest. A full disk is one DiskFullError
    naming the folder, with nothing half-written left in it."""
    folder = Path(folder)
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        files = {CHECKPOINT_FILE: buffer.getvalue(), **{k: v.encode() for k, v in (texts or {}).items()}}
        entries = {}
        for name, data in files.items():
            entries[name] = _write_atomic(folder / name, data)
            written.append(folder / name)
        _write_atomic(folder / MANIFEST, json.dumps({"format": 1, "files": entries}, indent=1).encode())
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if is_no_space(exc):
            raise no_space_error(folder, exc) from None
        raise
    return folder


def problem(folder: str | Path) -> str | None:
    """Why `folder` is not a complete checkpoint (None when it verifies against its manifest)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return f"{folder.name} is unfinished: no {MANIFEST} (it was cut short, or written by an older gsenet)"
    try:
        entries = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        return f"{manifest} is unreadable ({exc})"
    for name, entry in entries.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != entry["bytes"]:
            return f"{path} is truncated or partial ({size} bytes, {entry['bytes']} written)"
        if _sha256(path.read_bytes()) != entry["sha256"]:
            return f"{path} fails its sha256 checksum (garbled bytes)"
    return None


def read_checkpoint(folder: str | Path, *, allow_unverified: bool = False) -> dict:
    """The state of a verified checkpoint folder (torch.load with weights_only=True).

    `allow_unverified`: also load a folder without a manifest (written before checksums existed).
    """
    folder = Path(folder)
    reason = problem(folder)
    unverified = reason is not None and not (folder / MANIFEST).exists()
    if reason is not None and not (allow_unverified and unverified and (folder / CHECKPOINT_FILE).is_file()):
        raise CorruptCheckpointError(reason)
    try:
        return torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CorruptCheckpointError(f"{folder / CHECKPOINT_FILE}: cannot load ({exc})") from None


def order_key(name: str) -> tuple[int, int, str]:
    """Newest last: by step, then by generation (a run that fell back to an older checkpoint
    writes `_g<n>` folders, newer than same-step folders of the corrupt line), then by name."""
    match = _FOLDER_NAME.match(name)
    if not match:
        return (-1, 0, name)
    return (int(match.group(1)), int(match.group(2) or 0), name)


def folder_name(step: int, generation: int = 0, suffix: str = "") -> str:
    return f"{FOLDER_PREFIX}{step:08d}" + (f"_g{generation}" if generation else "") + suffix


def newest_first(names: Iterable[str]) -> list[str]:
    return sorted((n for n in names if n.startswith(FOLDER_PREFIX)), key=order_key, reverse=True)


def newest_valid(run_folder: str | Path) -> tuple[Path | None, list[str]]:
    """(newest checkpoint folder of a local run folder that verifies, why each newer one was skipped).

    A run written before checksums (no manifest anywhere) gives its newest folder, unverified.
    """
    run_folder = Path(run_folder)
    names = newest_first(p.name for p in run_folder.iterdir() if (p / CHECKPOINT_FILE).exists() or p.is_dir())
    skipped = []
    for name in names:
        reason = problem(run_folder / name)
        if reason is None:
            return run_folder / name, skipped
        skipped.append(reason)
    legacy = [n for n in names if (run_folder / n / CHECKPOINT_FILE).is_file()]
    if legacy and not any((run_folder / n / MANIFEST).exists() for n in names):
        return run_folder / legacy[0], []
    return None, skipped
