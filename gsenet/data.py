"""Recordings on disk -> training segments and whole recordings (PyTorch datasets).

Layout (one folder per recording, one mono file per signal):

    ROOT/{train,val,test}/<recording>/channel_1.wav     beamformer output   (DataConfig.beam_channel)
                                      channel_2.wav     reference mic       (DataConfig.ref_channel)
                                      channel_3..N.wav  other microphones   (not read for training)
                                      ground_truth.wav  clean target        (DataConfig.target_file)

Decisions, so that nothing happens silently:
- Training items are random fixed-length segments read straight from the files by seeking, with the
  same offset in beam, reference and target. Item i of an epoch is a function of (seed, epoch, i):
  one draw picks a (recording, offset) pair uniformly among all valid pairs, so every second of
  audio is equally likely whatever the recording lengths.
- Recordings shorter than one training segment are skipped for training (never padded) with a
  warning that lists them; validation and test use every recording whole, with its true length.
- A recording whose files are at another rate than the model's is resampled once (soxr VHQ) into
  CACHE/resampled/ (float WAV, keyed by path, size, mtime and rate) and read from there.
- A stereo file, files of one recording at different rates, or different lengths are errors that
  name the file. With DataConfig.length_policy="trim" differing lengths are trimmed to the shortest
  (with a warning) instead.
- Content checks (NaN, silence, clipping, beam/reference delay) live in gsenet.checks; the training
  driver runs them first (`checks.prepare_data`), then every worker builds these datasets with
  `exclude=report.bad_recordings`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gsenet.audio import audio_info, read_audio, resample, write_audio
from gsenet.config import DataConfig
from gsenet.errors import DataError
from gsenet.storage import cache_root, file_lock

log = logging.getLogger(__name__)

LAYOUT_HINT = "expected ROOT/{train,val,test}/<recording>/channel_1.wav, channel_2.wav, ..., ground_truth.wav"


@dataclass(frozen=True)
class Recording:
    """One recording, ready to read at the model's sample rate."""

    name: str  # folder name, unique within its split
    folder: Path
    beam: Path  # files to read: the originals, or their resampled copies in the cache
    ref: Path
    target: Path
    frames: int  # usable length in samples at the model's rate (all three files have at least this)
    source_rate: int  # the files' own sample rate
    starts: tuple[int, int, int] = (0, 0, 0)  # beam, ref, target samples skipped first (data.align=auto)


def recording_folders(split_dir: Path) -> list[Path]:
    """The recording folders of a split, sorted; an error if the split is missing or empty."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split folder is missing; {LAYOUT_HINT}")
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{split_dir}: no recording folders in this split; {LAYOUT_HINT}")
    return folders


def probe_recording(folder: Path, cfg: DataConfig) -> tuple[dict[str, Path], int, int]:
    """Check the headers of the beam, reference and target files of one recording.

    Returns ({"beam": path, "ref": path, "target": path}, sample_rate, frames) where frames is the
    common length at the files' rate (the shortest under length_policy="trim").
    """
    files = {"beam": folder / cfg.beam_channel, "ref": folder / cfg.ref_channel, "target": folder / cfg.target_file}
    infos = {}
    for role, path in files.items():
        if not path.is_file():
            present = ", ".join(sorted(p.name for p in folder.glob("*"))) or "nothing"
            raise DataError(f"{path}: {role} file is missing (folder holds: {present}); {LAYOUT_HINT}")
        info = audio_info(path)
        if info.channels != 1:
            raise DataError(
                f"{path}: has {info.channels} channels, expected mono (one file per microphone); "
                f"split it into one file per channel, e.g. `sox {path.name} out.wav remix 1`"
            )
        infos[role] = info
    rates = {role: info.samplerate for role, info in infos.items()}
    if len(set(rates.values())) > 1:
        detail = ", ".join(f"{files[r].name}: {rate} Hz" for r, rate in rates.items())
        raise DataError(f"{folder}: files are at different sample rates ({detail}); export them all at one rate")
    lengths = {role: info.frames for role, info in infos.items()}
    if len(set(lengths.values())) > 1 and cfg.align != "auto":  # auto cuts every file to the aligned length
        detail = ", ".join(f"{files[r].name}: {n} samples" for r, n in lengths.items())
        if cfg.length_policy != "trim":
            raise DataError(
                f"{folder}: files differ in length ({detail}); fix the export, or set data.length_policy=trim "
                "to trim every file to the shortest"
            )
        log.warning(
            "%s: files differ in length (%s); trimming to the shortest (data.length_policy=trim)", folder, detail
        )
    return files, next(iter(rates.values())), min(lengths.values())


def resampled_copy(path: Path, to_rate: int, cache_dir: str = "") -> Path:
    """`path` resampled to `to_rate`, computed once and cached (shared by processes on this node)."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{to_rate}".encode()).hexdigest()[:20]
    dest = cache_root(cache_dir) / "resampled" / f"{key}-{path.stem}-{to_rate}.wav"
    if dest.exists():
        return dest
    with file_lock(dest.with_suffix(".lock")):
        if not dest.exists():  # another process may have written it while we waited
            samples, rate = read_audio(path)
            write_audio(dest, resample(samples, rate, to_rate), to_rate, subtype="FLOAT")
    return dest


def load_recording(folder: Path, cfg: DataConfig, sample_rate: int) -> Recording:
    files, rate, frames = probe_recording(folder, cfg)
    starts = (0, 0, 0)
    if cfg.align == "auto":  # the shift and cut `gsenet data align` would write (reported by the linter)
        from gsenet.align import loading_view

        starts, frames = loading_view(folder, cfg)
    if rate != sample_rate:
        files = {role: resampled_copy(path, sample_rate, cfg.cache_dir) for role, path in files.items()}
        starts = tuple(round(start * sample_rate / rate) for start in starts)
        lengths = [audio_info(path).frames - start for path, start in zip(files.values(), starts, strict=True)]
        frames = min(lengths + [round(frames * sample_rate / rate)])
    return Recording(folder.name, folder, files["beam"], files["ref"], files["target"], frames, rate, starts)


def load_recordings(
    split_dir: Path, cfg: DataConfig, sample_rate: int, exclude: Collection[str] = ()
) -> list[Recording]:
    """Every usable recording of a split. A bad one raises, or is skipped and listed when
    cfg.skip_bad_recordings is set. `exclude` holds names ("rec_003" or "train/rec_003") to leave out."""
    split_dir = Path(split_dir)
    recordings, skipped = [], []
    for folder in recording_folders(split_dir):
        if folder.name in exclude or f"{split_dir.name}/{folder.name}" in exclude:
            continue
        try:
            recordings.append(load_recording(folder, cfg, sample_rate))
        except DataError as exc:
            if not cfg.skip_bad_recordings:
                raise
            skipped.append(str(exc))
    if skipped:
        log.warning(
            "skipping %d bad recording(s) in %s (data.skip_bad_recordings):\n  %s",
            len(skipped),
            split_dir,
            "\n  ".join(skipped),
        )
    if not recordings:
        raise DataError(f"{split_dir}: no usable recordings left (all excluded or bad); {LAYOUT_HINT}")
    return recordings


def read_excerpt(recording: Recording, start: int, frames: int) -> dict[str, np.ndarray]:
    """`frames` samples from `start` of beam, reference and target (seeking, not loading whole files)."""
    out = {}
    for role, skip in zip(("beam", "ref", "target"), recording.starts, strict=True):
        path = getattr(recording, role)
        samples, _ = read_audio(path, skip + start, frames)
        if len(samples) != frames:
            raise DataError(
                f"{path}: expected {frames} samples from {start}, got {len(samples)}; the file is truncated, "
                "re-export it (or run `gsenet data check` on the dataset)"
            )
        out[role] = samples
    return out


def _item(excerpt: dict[str, np.ndarray], name: str) -> dict:
    item = {role: torch.from_numpy(samples) for role, samples in excerpt.items()}
    item.update(length=len(excerpt["target"]), name=name)
    return item


class SegmentDataset(torch.utils.data.Dataset):
    """`length` random segments of cfg.segment_seconds per epoch; item i depends only on (seed, epoch, i).

    Call `set_epoch(epoch)` before each epoch (in the process that owns the dataset: with
    DataLoader workers do not use persistent_workers, so workers see the new epoch).
    """

    def __init__(
        self,
        split_dir: Path,
        cfg: DataConfig,
        sample_rate: int,
        *,
        seed: int = 0,
        length: int,
        exclude: Collection[str] = (),
    ):
        self.seed, self.length, self.epoch = seed, length, 0
        self.segment = int(round(cfg.segment_seconds * sample_rate))
        recordings = load_recordings(split_dir, cfg, sample_rate, exclude)
        short = [r.name for r in recordings if r.frames < self.segment]
        if short:
            log.warning(
                "%s: %d recording(s) shorter than one training segment (%.2f s) are not used for training: %s",
                split_dir, len(short), cfg.segment_seconds, ", ".join(short[:20]) + (" ..." if len(short) > 20 else ""),
            )  # fmt: skip
        self.recordings = [r for r in recordings if r.frames >= self.segment]
        if not self.recordings:
            raise DataError(
                f"{split_dir}: no recording is at least data.segment_seconds={cfg.segment_seconds} s long; "
                "lower data.segment_seconds or add longer recordings"
            )
        # Valid start offsets per recording, laid end to end: one integer draw picks (recording, offset).
        self.ends = np.cumsum([r.frames - self.segment + 1 for r in self.recordings])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[Recording, int]:
        """The (recording, offset) of item `index` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        draw = int(rng.integers(self.ends[-1]))
        which = int(np.searchsorted(self.ends, draw, side="right"))
        offset = draw - (int(self.ends[which - 1]) if which else 0)
        return self.recordings[which], offset

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        recording, offset = self.locate(index)
        return _item(read_excerpt(recording, offset, self.segment), f"{recording.name}@{offset}")


class RecordingDataset(torch.utils.data.Dataset):
    """Whole recordings with their true lengths (validation, test)."""

    def __init__(
        self,
        split_dir: Path,
        cfg: DataConfig,
        sample_rate: int,
        *,
        exclude: Collection[str] = (),
        max_recordings: int = 0,  # the first N (in folder order) only; 0 = all
    ):
        self.recordings = load_recordings(split_dir, cfg, sample_rate, exclude)
        if max_recordings:
            self.recordings = self.recordings[:max_recordings]

    def __len__(self) -> int:
        return len(self.recordings)

    def __getitem__(self, index: int) -> dict:
        recording = self.recordings[index]
        return _item(read_excerpt(recording, 0, recording.frames), recording.name)


def collate_batch(items: Sequence[dict]) -> dict:
    """Stack items into zero-padded [B, Lmax] float32 tensors plus their true `lengths` and `names`."""
    lengths = torch.tensor([item["length"] for item in items], dtype=torch.long)
    longest = int(lengths.max())
    batch = {}
    for role in ("beam", "ref", "target"):
        padded = torch.zeros(len(items), longest, dtype=torch.float32)
        for row, item in enumerate(items):
            padded[row, : item["length"]] = item[role]
        batch[role] = padded
    batch.update(lengths=lengths, names=[item["name"] for item in items])
    return batch
