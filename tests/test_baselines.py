"""Classical and oracle reference systems: each does what it claims, on signals of known quality."""

import numpy as np
import pytest

from gsenet import metrics
from gsenet.baselines import minimum_statistics_noise, oracle_irm, run_baselines, wiener
from gsenet.speech import procedural_noise, procedural_speech, random_speaker

FS = 16000


@pytest.fixture(scope="module")
def speech():
    rng = np.random.default_rng(0)
    s = procedural_speech(rng, 4 * FS, FS, random_speaker(rng)).astype(np.float64)
    return 0.05 * s / np.sqrt(np.mean(s**2))


def at_snr(speech, noise, snr_db):
    return speech + noise * np.sqrt(np.sum(speech**2) / np.sum(noise**2)) / 10 ** (snr_db / 20)


def reference_si_sdr(estimate, target):
    """Le Roux et al.'s definition, written out independently of gsenet.metrics."""
    estimate, target = estimate - estimate.mean(), target - target.mean()
    s = np.dot(estimate, target) / np.dot(target, target) * target
    return 10 * np.log10(np.sum(s**2) / np.sum((estimate - s) ** 2))


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0])
def test_wiener_improves_white_noise_snr(speech, snr_db):
    noisy = at_snr(speech, np.random.default_rng(1).standard_normal(len(speech)), snr_db)
    out = wiener(noisy, FS)
    assert out.shape == noisy.shape and out.dtype == np.float32
    before, after = reference_si_sdr(noisy, speech), reference_si_sdr(out.astype(np.float64), speech)
    assert after > before + 2.0, (before, after)
    assert metrics.si_sdr(out, speech) == pytest.approx(after, abs=1e-3)  # metric == NumPy reference


def test_minimum_statistics_tracks_stationary_noise_power():
    rng = np.random.default_rng(2)
    power = rng.exponential(2.0, size=(400, 33))  # a white noise periodogram, mean power 2
    estimate = minimum_statistics_noise(power, frames_per_s=125)
    assert 0.5 * 2.0 < np.median(estimate[200:]) < 2.0 * 2.0


def test_oracle_irm_beats_the_noisy_input(speech):
    rng = np.random.default_rng(3)
    for noise in (rng.standard_normal(len(speech)), procedural_noise(rng, "babble", len(speech), FS)):
        noisy = at_snr(speech, noise, 0.0)
        out = oracle_irm(noisy, speech, FS)
        assert reference_si_sdr(out.astype(np.float64), speech) > reference_si_sdr(noisy, speech) + 5
    assert reference_si_sdr(oracle_irm(speech, speech, FS).astype(np.float64), speech) > 40  # clean: passes


def test_run_baselines_names_and_lengths(speech):
    outs = run_baselines(speech[:12345], speech[:12345], FS)
    assert set(outs) == {"wiener", "oracle_irm"}
    assert all(len(v) == 12345 for v in outs.values())
