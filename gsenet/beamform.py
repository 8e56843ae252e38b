"""Classical STFT-domain beamformers (numpy only): delay-and-sum, MVDR, superdirective.

All are fixed per frequency: weights w[f, m] are designed once and applied to every frame as
y = w^H x, so applying a beamformer to each separately simulated component (target, interference,
noise) and summing gives exactly the beamformer's output on the mixture. That is how the
simulation measures the SIR of the beamformer channel.

Conventions: microphone positions are [M, 3] in metres; a direction is (azimuth, elevation) in
degrees, azimuth counter-clockwise from +x in the horizontal plane; steering vectors are far-field
and relative to the reference microphone, so a distortionless beamformer reproduces the target as
the reference microphone hears it (no delay between the beamformer output and the raw reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPEED_OF_SOUND = 343.0  # m/s
METHODS = ("ds", "mvdr", "superdirective")


# ----------------------------------------------------------------------------------------------
# STFT with exact reconstruction (weighted overlap-add)
# ----------------------------------------------------------------------------------------------
def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1]  # periodic Hann


def stft(x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """x[..., L] -> complex [..., F, T]. Zero-padded so every sample is covered by n_fft/hop frames."""
    pad_left = n_fft - hop
    n_frames = int(np.ceil((x.shape[-1] + pad_left) / hop))
    pad_right = (n_frames - 1) * hop + n_fft - x.shape[-1] - pad_left
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad_left, pad_right)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    return np.swapaxes(np.fft.rfft(frames * _window(n_fft), axis=-1), -1, -2)


def istft(spec: np.ndarray, length: int, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Inverse of `stft` (complex [..., F, T] -> [..., length])."""
    frames = np.fft.irfft(np.swapaxes(spec, -1, -2), n_fft, axis=-1) * _window(n_fft)
    n_frames = frames.shape[-2]
    total = (n_frames - 1) * hop + n_fft
    out = np.zeros(frames.shape[:-2] + (total,))
    norm = np.zeros(total)
    for t in range(n_frames):
        out[..., t * hop : t * hop + n_fft] += frames[..., t, :]
        norm[t * hop : t * hop + n_fft] += _window(n_fft) ** 2
    pad_left = n_fft - hop
    return (out / np.maximum(norm, 1e-8))[..., pad_left : pad_left + length]


# ----------------------------------------------------------------------------------------------
# Array manifold and noise fields
# ----------------------------------------------------------------------------------------------
def direction_vector(azimuth_deg: float, elevation_deg: float = 0.0) -> np.ndarray:
    """Unit vector pointing from the array towards the source."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])


def circular_array(n_mics: int = 3, radius: float = 0.02, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[M, 3] positions of a uniform circular array in the horizontal plane (mic 0 on +x)."""
    angles = 2 * np.pi * np.arange(n_mics) / n_mics
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.zeros(n_mics)], axis=1)
    return ring + np.asarray(center, dtype=np.float64)


def steering_vector(
    mic_xyz: np.ndarray,
    freqs: np.ndarray,
    azimuth_deg: float,
    elevation_deg: float = 0.0,
    ref: int = 0,
    c: float = SPEED_OF_SOUND,
) -> np.ndarray:
    """Far-field relative transfer function d[f, m] = X_m / X_ref for a plane wave; d[:, ref] = 1."""
    u = direction_vector(azimuth_deg, elevation_deg)
    advance = (mic_xyz - mic_xyz[ref]) @ u / c  # seconds each mic hears the wave before the ref
    return np.exp(2j * np.pi * freqs[:, None] * advance[None, :])


def diffuse_coherence(mic_xyz: np.ndarray, freqs: np.ndarray, c: float = SPEED_OF_SOUND) -> np.ndarray:
    """Coherence [F, M, M] of a spherically isotropic (diffuse) noise field: sinc(2 f d / c)."""
    dist = np.linalg.norm(mic_xyz[:, None, :] - mic_xyz[None, :, :], axis=-1)
    return np.sinc(2 * freqs[:, None, None] * dist[None] / c)


def spatial_covariance(spec: np.ndarray) -> np.ndarray:
    """Sample covariance [F, M, M] of a multichannel STFT [M, F, T]."""
    return np.einsum("mft,nft->fmn", spec, spec.conj()) / spec.shape[-1]


def diffuse_noise(
    rng: np.random.Generator, mic_xyz: np.ndarray, n_samples: int, sample_rate: int, source: np.ndarray | None = None
) -> np.ndarray:
    """[M, n_samples] noise with diffuse coherence between mics (Habets & Gannot's mixing method).

    `source` gives the noise's spectral colour ([n_samples] or [M, n_samples] independent
    signals); white when omitted.
    """
    n_mics = len(mic_xyz)
    if source is None:
        source = rng.standard_normal((n_mics, n_samples))
    elif source.ndim == 1:  # decorrelate one coloured signal into M by random circular shifts
        source = np.stack([np.roll(source, int(rng.integers(n_samples))) for _ in range(n_mics)])
    n_fft, hop = 256, 64
    spec = stft(source, n_fft, hop)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    gamma = diffuse_coherence(mic_xyz, freqs)
    # Mixing matrix: the symmetric square root of Gamma (V sqrt(L) V^H). Unlike V sqrt(L) alone it
    # varies smoothly with frequency (eigenvector signs and order may jump between bins), which
    # keeps the mixed STFT consistent, so the coherence survives the inverse STFT.
    vals, vecs = np.linalg.eigh(gamma)
    mix = (vecs * np.sqrt(np.clip(vals, 0, None))[:, None, :]) @ np.conj(np.swapaxes(vecs, -1, -2))
    mixed = np.einsum("fmk,kft->mft", mix, spec)
    return istft(mixed, n_samples, n_fft, hop)


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------
def delay_and_sum_weights(steer: np.ndarray) -> np.ndarray:
    """w[f] = d[f] / M: aligns and averages; distortionless (w^H d = 1)."""
    return steer / steer.shape[-1]


def mvdr_weights(steer: np.ndarray, noise_cov: np.ndarray, loading: float = 1e-3) -> np.ndarray:
    """w = R^-1 d / (d^H R^-1 d): least output noise power subject to w^H d = 1.

    `loading` adds loading * trace(R)/M to the diagonal (robustness to steering errors and to
    near-singular covariances at low frequencies).
    """
    n_mics = steer.shape[-1]
    scale = np.real(np.trace(noise_cov, axis1=-2, axis2=-1)) / n_mics
    regularised = noise_cov + (loading * scale + 1e-12)[:, None, None] * np.eye(n_mics)
    r_inv_d = np.linalg.solve(regularised, steer[..., None])[..., 0]
    return r_inv_d / np.einsum("fm,fm->f", steer.conj(), r_inv_d)[:, None]


@dataclass
class Beamformer:
    """Fixed per-frequency weights [F, M] and the STFT they apply in; call it on [M, L] signals."""

    weights: np.ndarray
    n_fft: int
    hop: int
    method: str

    def __call__(self, signals: np.ndarray) -> np.ndarray:
        spec = stft(signals, self.n_fft, self.hop)
        out = np.einsum("fm,mft->ft", self.weights.conj(), spec)
        return istft(out, signals.shape[-1], self.n_fft, self.hop)


def design_beamformer(
    method: str,
    mic_xyz: np.ndarray,
    sample_rate: int,
    azimuth_deg: float,
    elevation_deg: float = 0.0,
    *,
    noise: np.ndarray | None = None,
    ref: int = 0,
    n_fft: int = 512,
    hop: int = 128,
    loading: float | None = None,
) -> Beamformer:
    """Steer a beamformer at (azimuth, elevation).

    - "ds": delay-and-sum.
    - "mvdr": MVDR with the noise covariance estimated from `noise` ([M, L] noise + interference
      as the array hears it, e.g. from speech pauses); needs `noise`.
    - "superdirective": MVDR with the diffuse-noise coherence (a fixed design, no estimate).
    """
    if method not in METHODS:
        raise ValueError(f"unknown beamformer {method!r}; choose one of {METHODS}")
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    steer = steering_vector(mic_xyz, freqs, azimuth_deg, elevation_deg, ref)
    if method == "ds":
        weights = delay_and_sum_weights(steer)
    elif method == "mvdr":
        if noise is None:
            raise ValueError("the mvdr beamformer needs `noise` ([M, L]) to estimate the noise covariance")
        weights = mvdr_weights(steer, spatial_covariance(stft(noise, n_fft, hop)), 1e-3 if loading is None else loading)
    else:
        # Diffuse coherence is near-singular for small arrays at low frequencies: load it more.
        weights = mvdr_weights(steer, diffuse_coherence(mic_xyz, freqs), 1e-2 if loading is None else loading)
    return Beamformer(weights=weights, n_fft=n_fft, hop=hop, method=method)
