"""Audio I/O (soundfile), resampling (soxr) and small signal helpers. No torchaudio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from gsenet.errors import DataError


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file, or a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    try:
        return sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for corrupt headers
        raise DataError(f"{path}: not a readable audio file ({exc}); re-export it as WAV/FLAC") from None


def read_audio(path: str | Path, start: int = 0, frames: int = -1, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read `frames` samples from `start` (seeking, not loading the whole file) as float32.

    With `mono=True` a multi-channel file is an error (GSENet's format has one file per channel).
    """
    path = Path(path)
    info = audio_info(path)
    if mono and info.channels != 1:
        raise DataError(
            f"{path}: has {info.channels} channels, expected mono (one file per microphone); "
            f"split it into one file per channel, e.g. `sox {path.name} out.wav remix 1`"
        )
    try:
        data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=False)
    except Exception as exc:
        raise DataError(f"{path}: cannot read samples ({exc}); the file is truncated or corrupt") from None
    return np.ascontiguousarray(data, dtype=np.float32), sr


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write mono audio atomically (temp file + rename), so readers never see partial files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"write_audio expects mono samples of shape (time,), got {samples.shape}")
    if subtype.startswith("PCM"):
        samples = np.clip(samples, -1.0, 1.0)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), samples, sample_rate, subtype=subtype, format="WAV")
    tmp.replace(path)
    return path


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """High-quality resampling (soxr VHQ); identity when the rates match."""
    if from_rate == to_rate:
        return samples
    import soxr

    return soxr.resample(samples, from_rate, to_rate, quality="VHQ").astype(np.float32)


def rms_db(samples: np.ndarray, eps: float = 1e-12) -> float:
    return float(10 * np.log10(np.mean(np.square(samples, dtype=np.float64)) + eps))
