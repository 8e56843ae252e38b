import math

import numpy as np
import pytest
import torch

from gsenet import metrics

SR = 16000


def speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonics: enough structure for PESQ's voice activity detector."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    return (0.2 * voiced * envelope).astype(np.float32)


def test_si_sdr_matches_definition_and_is_scale_invariant():
    rng = np.random.default_rng(0)
    target = speechlike()
    noise = rng.standard_normal(len(target)).astype(np.float32)
    noise -= noise.mean()
    t0 = target - target.mean()
    noise -= np.dot(noise, t0) / np.dot(t0, t0) * t0  # orthogonal to the target
    noise *= np.linalg.norm(t0) / np.linalg.norm(noise) / 10  # exactly 20 dB below
    assert metrics.si_sdr(target + noise, target) == pytest.approx(20.0, abs=0.05)
    assert metrics.si_sdr(3.0 * (target + noise), target) == pytest.approx(20.0, abs=0.05)
    assert metrics.si_sdr(target, target) > 80


def test_pesq_and_stoi_rank_clean_above_noisy():
    rng = np.random.default_rng(1)
    target = speechlike()
    noisy = target + 0.05 * rng.standard_normal(len(target)).astype(np.float32)
    clean, degraded = metrics.score(target, target, SR), metrics.score(noisy, target, SR)
    assert clean["pesq"] > 4.0 and 1.0 <= degraded["pesq"] < clean["pesq"]
    assert clean["stoi"] > 0.99 and degraded["stoi"] < clean["stoi"]


def test_pesq_at_other_rate_is_resampled_and_silence_is_nan():
    target = speechlike()
    from gsenet.audio import resample

    target_48k = resample(target, SR, 48000)
    assert metrics.pesq_wb(target_48k, target_48k, 48000) > 4.0
    assert math.isnan(metrics.pesq_wb(np.zeros(SR), np.zeros(SR), SR))


def test_trim_uses_lengths_and_nanmean_skips_nan():
    batch = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    parts = metrics.trim(batch, torch.tensor([6, 2]))
    assert [len(p) for p in parts] == [6, 2] and parts[1].tolist() == [6.0, 7.0]
    assert metrics.nanmean([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(metrics.nanmean([math.nan]))


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="equal length"):
        metrics.si_sdr(np.zeros(10), np.zeros(11))


def test_a_call_that_never_returns_is_nan_after_the_timeout():
    import time

    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="did not finish"):
        value = metrics._run_with_timeout(time.sleep, (60,), timeout=0.5, what="sleep")
    assert math.isnan(value) and time.monotonic() - start < 10
