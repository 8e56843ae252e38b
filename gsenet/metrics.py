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
PESQ_TIMEOUT_S = 20.0  # per call; PESQ takes well under a second for a few seconds of audio
# SI-SDR guards, as fractions of the target's energy (shared with gsenet.losses.si_sdr):
RESIDUAL_FLOOR = 1e-12  # a perfect estimate scores 10*log10(1/1e-12) = 120 dB at most
SILENCE_FLOOR = 1e-17  # an all-zero estimate scores 10*log10(1e-17/1e-12) = -50 dB
ZERO_GUARD = 1e-20  # absolute: keeps an all-zero target finite (the data linter refuses those)
SILENCE_DB = 10 * math.log10(SILENCE_FLOOR / RESIDUAL_FLOOR)
PERFECT_DB = 10 * math.log10(1 / RESIDUAL_FLOOR)


def si_sdr(estimate: np.ndarray, target: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), zero-mean signals.

    The guards are relative to the target's energy, never added to the estimate's side alone, so
    the score cannot be gamed by shrinking the output: any scaled copy scores the same, an all-zero
    output scores SILENCE_DB (-50 dB, far below any real input), a perfect one at most PERFECT_DB.
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    _check_pair(estimate, target)
    estimate = estimate - estimate.mean()
    target = target - target.mean()
    target_energy = np.dot(target, target) + ZERO_GUARD
    projection = (np.dot(estimate, target) / target_energy) * target
    noise = estimate - projection
    signal_power = np.dot(projection, projection) + SILENCE_FLOOR * target_energy
    noise_power = np.dot(noise, noise) + RESIDUAL_FLOOR * target_energy
    return float(10 * np.log10(signal_power / noise_power))


def pesq_wb(estimate: np.ndarray, target: np.ndarray, sample_rate: int, timeout: float = PESQ_TIMEOUT_S) -> float:
    """PESQ wide-band MOS-LQO (1.04..4.64); NaN when PESQ finds no speech or does not finish.

    The `pesq` C code can loop forever on some inputs (seen on an early-training model output),
    so it runs in a forked child that is killed after `timeout` seconds.
    """
    from gsenet.audio import resample

    _check_pair(estimate, target)
    estimate = resample(np.asarray(estimate, dtype=np.float32), sample_rate, PESQ_RATE)
    target = resample(np.asarray(target, dtype=np.float32), sample_rate, PESQ_RATE)
    if len(target) < PESQ_RATE // 4 or not (np.isfinite(estimate).all() and np.isfinite(target).all()):
        return math.nan  # PESQ needs at least 1/4 s of finite samples
    if not np.any(target) or not np.any(estimate):
        return math.nan
    return _run_with_timeout(_pesq_raw, (target, estimate), timeout, what="PESQ")


def _pesq_raw(target: np.ndarray, estimate: np.ndarray) -> float:
    from pesq import pesq
    from pesq.cypesq import PesqError

    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(pesq(PESQ_RATE, target, estimate, "wb"))
    except PesqError:  # e.g. NoUtterancesError
        return math.nan


def _run_with_timeout(fn, args: tuple, timeout: float, what: str) -> float:
    """fn(*args) in a forked child; NaN (with a warning) when it does not return within `timeout`."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(fn, args, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if receiver.poll(timeout):
            return float(receiver.recv())
        warnings.warn(f"{what} did not finish in {timeout:.0f} s; scored as NaN", RuntimeWarning, stacklevel=3)
        return math.nan
    except EOFError:  # the child died
        return math.nan
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)


def _child(fn, args, sender) -> None:
    try:
        sender.send(fn(*args))
    except BaseException:
        sender.send(math.nan)
    finally:
        sender.close()


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


def nanmean(values) -> float:
    """Mean of the finite values (NaN when there are none), without numpy's empty-slice warning."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else math.nan


def disjoint_union(*parts: dict) -> dict:
    """One dict from several whose keys must not overlap: a reported metric is never silently
    replaced by another one of the same name (a loss term once overwrote the true SI-SDR)."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if key in out:
                raise ValueError(f"metric {key!r} reported twice")
            out[key] = value
    return out


def _check_pair(estimate: np.ndarray, target: np.ndarray) -> None:
    if np.ndim(estimate) != 1 or np.shape(estimate) != np.shape(target):
        raise ValueError(f"expected two 1-D signals of equal length, got {np.shape(estimate)} and {np.shape(target)}")
