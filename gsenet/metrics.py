"""Objective speech-quality metrics: SI-SDR, PESQ (wide-band) and STOI.

All functions take 1-D float arrays at `sample_rate` (already trimmed to the example's true length,
or use `trim` with the lengths of a padded batch). PESQ and STOI are slow (tens of ms per second of
audio), so training scores them only on a fixed validation subset.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

PESQ_RATE = 16000  # PESQ wide-band is defined at 16 kHz


def si_sdr(estimate: np.ndarray, target: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), zero-mean signals."""
    estimate = np.asarray(estimate, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    _check_pair(estimate, target)
    estimate = estimate - estimate.mean()
    target = target - target.mean()
    scale = np.dot(estimate, target) / (np.dot(target, target) + eps)
    projection = scale * target
    noise = estimate - projection
    return float(10 * np.log10((np.dot(projection, projection) + eps) / (np.dot(noise, noise) + eps)))


def pesq_wb(estimate: np.ndarray, target: np.ndarray, sample_rate: int) -> float:
    """PESQ wide-band MOS-LQO (1.04..4.64); NaN when PESQ finds no speech in the target."""
    from pesq import pesq
    from pesq.cypesq import PesqError

    from gsenet.audio import resample

    _check_pair(estimate, target)
    estimate = resample(np.asarray(estimate, dtype=np.float32), sample_rate, PESQ_RATE)
    target = resample(np.asarray(target, dtype=np.float32), sample_rate, PESQ_RATE)
    if len(target) < PESQ_RATE // 4:  # PESQ needs at least 1/4 s
        return math.nan
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(pesq(PESQ_RATE, target, estimate, "wb"))
    except PesqError:  # e.g. NoUtterancesError on silence
        return math.nan


def stoi(estimate: np.ndarray, target: np.ndarray, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility (0..1); NaN when the signal is too short."""
    from pystoi import stoi as _stoi

    _check_pair(estimate, target)
    with warnings.catch_warnings():  # pystoi warns (and returns 1e-5) on signals shorter than 30 frames
        warnings.simplefilter("ignore")
        value = float(_stoi(np.asarray(target, np.float64), np.asarray(estimate, np.float64), sample_rate, extended))
    return math.nan if value == 1e-5 else value


def score(estimate: np.ndarray, target: np.ndarray, sample_rate: int, *, perceptual: bool = True) -> dict[str, float]:
    """{"si_sdr", and with `perceptual`: "pesq", "stoi"} for one signal."""
    out = {"si_sdr": si_sdr(estimate, target)}
    if perceptual:
        out["pesq"] = pesq_wb(estimate, target, sample_rate)
        out["stoi"] = stoi(estimate, target, sample_rate)
    return out


def trim(batch, lengths) -> list[np.ndarray]:
    """Split a zero-padded batch [B, L] (Tensor or array) into its examples' true lengths."""
    array = batch.detach().float().cpu().numpy() if hasattr(batch, "detach") else np.asarray(batch)
    lengths = lengths.tolist() if hasattr(lengths, "tolist") else list(lengths)
    return [array[i, : int(n)] for i, n in enumerate(lengths)]


def nanmean(values) -> float:
    """Mean of the finite values (NaN when there are none), without numpy's empty-slice warning."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else math.nan


def _check_pair(estimate: np.ndarray, target: np.ndarray) -> None:
    if np.ndim(estimate) != 1 or np.shape(estimate) != np.shape(target):
        raise ValueError(f"expected two 1-D signals of equal length, got {np.shape(estimate)} and {np.shape(target)}")
