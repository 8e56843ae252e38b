"""Reference systems on the beamformer output, scored beside the model by `gsenet evaluate`.

- `wiener`: a classical single-channel enhancer, the level any learned model must beat: a Wiener
  gain with decision-directed a priori SNR (Ephraim & Malah 1984) and a minimum-statistics noise
  estimate (Martin 2001, simplified: minimum of the smoothed periodogram over ~1.5 s, tracked in
  sub-windows, times a bias factor). Causal; no training data.
- `oracle_irm`: the ideal ratio mask computed from the clean target, sqrt(|S|^2 / (|S|^2 + |N|^2))
  with N = beam - target: what a real-valued mask on the beam can reach with perfect knowledge
  (a ceiling for masking approaches; it cannot be used outside evaluation).

Both take and return 1-D float arrays at `sample_rate` of the same length (NumPy/SciPy only).
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.032  # 512 samples at 16 kHz
HOP_FRACTION = 0.25


def _stft(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int, int]:
    from scipy.signal import stft

    n_fft = int(round(FRAME_S * sample_rate))
    hop = int(n_fft * HOP_FRACTION)
    _, _, spec = stft(x, nperseg=n_fft, noverlap=n_fft - hop, window="hann")
    return spec.T, n_fft, hop  # (frames, bins)


def _istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    from scipy.signal import istft

    _, x = istft(spec.T, nperseg=n_fft, noverlap=n_fft - hop, window="hann")
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(x))] = x[:length]
    return out


def minimum_statistics_noise(
    power: np.ndarray, frames_per_s: float, window_s: float = 1.5, smoothing: float = 0.85, bias: float = 1.5
) -> np.ndarray:
    """(frames, bins) periodogram -> noise power: the running minimum of the smoothed periodogram
    over the last `window_s` seconds (8 sub-windows, so it is O(frames)), times `bias` (the
    minimum of a smoothed noise periodogram underestimates its mean)."""
    n_sub = 8
    sub_len = max(1, int(round(window_s * frames_per_s / n_sub)))
    smoothed = power[0].copy()
    current_min = smoothed.copy()
    sub_minima = [smoothed.copy()]
    noise = np.empty_like(power)
    for t in range(power.shape[0]):
        smoothed = smoothing * smoothed + (1 - smoothing) * power[t]
        current_min = np.minimum(current_min, smoothed)
        noise[t] = bias * np.minimum(np.min(sub_minima, axis=0), current_min)
        if (t + 1) % sub_len == 0:  # a sub-window ends: keep its minimum, forget the oldest
            sub_minima = [*sub_minima[-(n_sub - 1) :], current_min]
            current_min = smoothed.copy()
    return noise


def wiener(beam: np.ndarray, sample_rate: int, *, dd_alpha: float = 0.98, gain_floor_db: float = -20.0) -> np.ndarray:
    """Wiener filter with decision-directed a priori SNR and minimum-statistics noise power."""
    beam = np.asarray(beam, dtype=np.float64)
    spec, n_fft, hop = _stft(beam, sample_rate)
    power = np.abs(spec) ** 2
    noise = np.maximum(minimum_statistics_noise(power, sample_rate / hop), 1e-20)
    floor = 10 ** (gain_floor_db / 20)
    gains = np.empty_like(power)
    previous_clean = np.zeros(power.shape[1])  # |G X|^2 of the last frame
    for t in range(power.shape[0]):
        posterior = power[t] / noise[t]
        prior = dd_alpha * previous_clean / noise[t] + (1 - dd_alpha) * np.maximum(posterior - 1, 0)
        gains[t] = np.maximum(prior / (1 + prior), floor)
        previous_clean = gains[t] ** 2 * power[t]
    return _istft(gains * spec, n_fft, hop, len(beam))


def oracle_irm(beam: np.ndarray, target: np.ndarray, sample_rate: int) -> np.ndarray:
    """The ideal ratio mask from the clean target, applied to the beam (needs the target)."""
    beam = np.asarray(beam, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if beam.shape != target.shape:
        raise ValueError(f"beam and target must have the same shape, got {beam.shape} and {target.shape}")
    spec, n_fft, hop = _stft(beam, sample_rate)
    clean, _, _ = _stft(target, sample_rate)
    speech_power, residual_power = np.abs(clean) ** 2, np.abs(spec - clean) ** 2
    mask = np.sqrt(speech_power / (speech_power + residual_power + 1e-20))
    return _istft(mask * spec, n_fft, hop, len(beam))


BASELINES = {"wiener": "Wiener (min. statistics) on the beam", "oracle_irm": "oracle IRM on the beam"}


def run_baselines(beam: np.ndarray, target: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """{name: output} of every baseline, keyed as in BASELINES."""
    return {"wiener": wiener(beam, sample_rate), "oracle_irm": oracle_irm(beam, target, sample_rate)}
