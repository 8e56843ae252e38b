import math

import numpy as np
import pytest

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


def numpy_si_sdr(estimate: np.ndarray, target: np.ndarray) -> float:
    """The textbook definition (Le Roux et al. 2019), no guards: the reference for well-posed inputs."""
    e = np.asarray(estimate, np.float64) - np.mean(estimate)
    t = np.asarray(target, np.float64) - np.mean(target)
    projection = np.dot(e, t) / np.dot(t, t) * t
    return 10 * np.log10(np.dot(projection, projection) / np.dot(e - projection, e - projection))


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 10.0, 30.0])
def test_si_sdr_equals_the_numpy_reference(snr_db):
    rng = np.random.default_rng(int(snr_db) + 100)
    target = speechlike()
    estimate = target + 10 ** (-snr_db / 20) * np.std(target) * rng.standard_normal(len(target))
    assert metrics.si_sdr(estimate, target) == pytest.approx(
        numpy_si_sdr(estimate, target), abs=1e-4
    )  # floors: < 1e-4 dB here


def test_silence_scores_far_below_any_real_input():
    rng = np.random.default_rng(3)
    target = speechlike()
    noisy = target + 3 * np.std(target) * rng.standard_normal(len(target))  # about -10 dB
    assert metrics.si_sdr(np.zeros_like(target), target) == pytest.approx(metrics.SILENCE_DB) == pytest.approx(-50)
    assert metrics.si_sdr(np.zeros_like(target), target) < metrics.si_sdr(noisy, target) - 30


@pytest.mark.parametrize("scale", [1e-3, 1e-2, 0.5, 7.0, 1e3])
def test_shrinking_or_growing_the_output_never_changes_the_score(scale):
    rng = np.random.default_rng(4)
    target = speechlike()
    estimate = target + 0.3 * np.std(target) * rng.standard_normal(len(target))
    assert metrics.si_sdr(scale * estimate, target) == pytest.approx(metrics.si_sdr(estimate, target), abs=1e-3)


def test_shrinking_towards_silence_only_ever_lowers_the_score():
    rng = np.random.default_rng(5)
    target = speechlike()
    estimate = target + 0.3 * np.std(target) * rng.standard_normal(len(target))
    scores = [metrics.si_sdr(scale * estimate, target) for scale in (1.0, 1e-4, 1e-6, 1e-8, 0.0)]
    assert all(a >= b - 1e-9 for a, b in zip(scores[:-1], scores[1:], strict=True)), scores
    assert scores[-1] == pytest.approx(metrics.SILENCE_DB)


@pytest.mark.parametrize("omega", [0.05, 0.2, 0.6])
def test_a_one_sample_delay_scores_its_known_value(omega):
    """For a sinusoid, a 1-sample delay leaves correlation cos(omega): SI-SDR = 20*log10(cot(omega))."""
    n = np.arange(64000)
    cycles = np.round(omega * len(n) / (2 * np.pi))  # whole periods: exact orthogonality of sin and cos
    omega = 2 * np.pi * cycles / len(n)
    target, delayed = np.sin(omega * n), np.sin(omega * (n - 1))
    expected = 20 * np.log10(1 / np.tan(omega))
    assert metrics.si_sdr(delayed, target) == pytest.approx(expected, abs=1e-3)
    assert numpy_si_sdr(delayed, target) == pytest.approx(expected, abs=1e-3)


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


def test_nanmean_skips_nan():
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
