import numpy as np
import pytest

from gsenet.beamform import (
    SPEED_OF_SOUND,
    circular_array,
    design_beamformer,
    diffuse_coherence,
    diffuse_noise,
    direction_vector,
    istft,
    spatial_covariance,
    stft,
)

FS = 16000


def plane_wave(signal: np.ndarray, mic_xyz: np.ndarray, azimuth_deg: float) -> np.ndarray:
    """[M, L]: a far-field source as each mic hears it (exact fractional delays, circular)."""
    advance = (mic_xyz - mic_xyz[0]) @ direction_vector(azimuth_deg) / SPEED_OF_SOUND
    freqs = np.fft.rfftfreq(len(signal), 1 / FS)
    spectrum = np.fft.rfft(signal)
    return np.fft.irfft(spectrum[None] * np.exp(2j * np.pi * freqs[None] * advance[:, None]), len(signal))


def gain_db(output: np.ndarray, reference: np.ndarray) -> float:
    core = slice(1024, -1024)  # ignore STFT edges
    return 10 * np.log10(np.sum(output[core] ** 2) / np.sum(reference[core] ** 2))


@pytest.mark.parametrize("length", [1, 100, 4001])
def test_stft_istft_reconstructs(length):
    x = np.random.default_rng(0).standard_normal((2, length))
    y = istft(stft(x, 512, 128), length, 512, 128)
    np.testing.assert_allclose(y, x, atol=1e-10)


@pytest.mark.parametrize("method", ["ds", "mvdr", "superdirective"])
def test_beamformer_passes_steered_source(method):
    mics = circular_array(3, 0.02)
    rng = np.random.default_rng(1)
    target = plane_wave(rng.standard_normal(FS), mics, azimuth_deg=40)
    interferer = plane_wave(rng.standard_normal(FS), mics, azimuth_deg=160)
    bf = design_beamformer(method, mics, FS, azimuth_deg=40, noise=interferer)
    out = bf(target)
    assert abs(gain_db(out, target[0])) < 0.2
    core = slice(1024, -1024)
    assert np.corrcoef(out[core], target[0, core])[0, 1] > 0.999  # no distortion or delay vs the ref mic


def test_mvdr_nulls_interferer_on_small_array():
    mics = circular_array(3, 0.02)
    rng = np.random.default_rng(2)
    interferer = plane_wave(rng.standard_normal(FS), mics, azimuth_deg=150)
    bf = design_beamformer("mvdr", mics, FS, azimuth_deg=30, noise=interferer)
    assert gain_db(bf(interferer), interferer[0]) < -15  # diagonal loading limits the null at low frequencies


def test_delay_and_sum_attenuates_off_axis_source():
    mics = circular_array(8, 0.1)  # DS needs aperture: a larger array than the default
    rng = np.random.default_rng(3)
    off_axis = plane_wave(rng.standard_normal(FS), mics, azimuth_deg=120)
    bf = design_beamformer("ds", mics, FS, azimuth_deg=0)
    assert gain_db(bf(off_axis), off_axis[0]) < -6


def test_superdirective_beats_delay_and_sum_on_diffuse_noise():
    mics = circular_array(3, 0.02)
    noise = diffuse_noise(np.random.default_rng(4), mics, 2 * FS, FS)
    ds = gain_db(design_beamformer("ds", mics, FS, 0)(noise), noise[0])
    sd = gain_db(design_beamformer("superdirective", mics, FS, 0)(noise), noise[0])
    assert ds < -1.0  # averaging 3 mics already helps at high frequencies
    assert sd < ds - 1.0


def test_diffuse_noise_has_diffuse_coherence():
    mics = circular_array(3, 0.05)
    noise = diffuse_noise(np.random.default_rng(5), mics, 4 * FS, FS)
    spec = stft(noise, 256, 64)
    cov = spatial_covariance(spec)
    power = np.real(np.einsum("fmm->fm", cov))
    coherence = np.real(cov[:, 0, 1]) / np.sqrt(power[:, 0] * power[:, 1])
    expected = diffuse_coherence(mics, np.fft.rfftfreq(256, 1 / FS))[:, 0, 1]
    error = np.abs(coherence - expected)[1:-1]
    assert error.mean() < 0.04 and error.max() < 0.2  # estimation noise of ~1000 frames
