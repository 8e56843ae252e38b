"""Sources for simulation: procedural speech and noise, or clips from a corpus on disk.

Without any data, `procedural_speech` makes a speech-like signal: voiced syllables (harmonics of a
moving pitch shaped by moving formants), unvoiced bursts (band-passed noise) and pauses, with a
per-speaker pitch and vocal-tract size. It is no substitute for real speech, but it has the
structure a speech enhancer must learn (harmonic, sparse in time-frequency, non-stationary), so a
fresh machine can train, sweep and test end to end. `procedural_noise` makes stationary-ish
noises (white, pink, brown, hum, babble-like, fan).

With a corpus (`SourceCorpus`), clips are read by seeking into random WAV/FLAC files, found
recursively, and resampled to the simulation rate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsenet.audio import audio_info, read_audio, resample
from gsenet.errors import DataError

NOISE_KINDS = ("white", "pink", "brown", "hum", "babble", "fan")
AUDIO_SUFFIXES = (".wav", ".flac")

# Vowel formant targets (F1, F2, F3) in Hz for an adult male vocal tract; speakers scale them.
VOWELS = np.array(
    [
        [730, 1090, 2440],  # a
        [530, 1840, 2480],  # e
        [270, 2290, 3010],  # i
        [570, 840, 2410],  # o
        [300, 870, 2240],  # u
        [660, 1720, 2410],  # ae
        [490, 1350, 1690],  # er
    ],
    dtype=np.float64,
)
FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 140.0])
FRAME = 80  # samples per control frame (5 ms at 16 kHz): pitch/formants are interpolated between frames


@dataclass
class Speaker:
    """Voice parameters: mean pitch, pitch range and vocal-tract scaling (formants)."""

    f0_hz: float
    f0_range: float  # relative pitch excursion (0.2 = +-20 %)
    formant_scale: float
    breathiness: float  # level of aspiration noise in voiced sounds (linear)
    rate: float  # syllables per second


def random_speaker(rng: np.random.Generator) -> Speaker:
    female = rng.random() < 0.5
    return Speaker(
        f0_hz=float(rng.uniform(165, 255) if female else rng.uniform(85, 150)),
        f0_range=float(rng.uniform(0.1, 0.3)),
        formant_scale=float(rng.uniform(1.08, 1.22) if female else rng.uniform(0.92, 1.05)),
        breathiness=float(rng.uniform(0.01, 0.06)),
        rate=float(rng.uniform(3.0, 5.5)),
    )


# ----------------------------------------------------------------------------------------------
# Procedural speech
# ----------------------------------------------------------------------------------------------
def _segments(rng: np.random.Generator, speaker: Speaker, n_frames: int, frame_s: float) -> list[tuple[str, int]]:
    """A sequence of (kind, frames): words of 1-4 syllables (optional fricative onsets) and pauses."""
    out: list[tuple[str, int]] = []
    total = 0
    if rng.random() < 0.5:  # recordings do not always start with silence
        out.append(("pause", int(rng.uniform(0.05, 0.4) / frame_s)))
    while total < n_frames:
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.35:
                out.append(("unvoiced", max(1, int(rng.uniform(0.04, 0.14) / frame_s))))
            syllable_s = rng.gamma(4.0, 1.0 / (4.0 * speaker.rate))
            out.append(("voiced", max(2, int(np.clip(syllable_s, 0.06, 0.45) / frame_s))))
        out.append(("pause", max(1, int(rng.uniform(0.05, 0.5) / frame_s))))
        total = sum(n for _, n in out)
    return out


def _formant_envelope(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Magnitude of a cascade of 2nd-order resonators at `freqs`; formants: [..., 3], freqs: [..., H]."""
    gain = np.ones_like(freqs)
    for k in range(formants.shape[-1]):
        f = formants[..., k : k + 1]
        b = FORMANT_BANDWIDTHS[k]
        gain = gain * (f * f) / np.sqrt((f * f - freqs * freqs) ** 2 + (b * freqs) ** 2 + 1e-9)
    return gain


def _band_noise(rng: np.random.Generator, n: int, sample_rate: int, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spectrum[(freqs < low) | (freqs > high)] = 0.0
    out = np.fft.irfft(spectrum, n)
    return out / (np.std(out) + 1e-12)


def procedural_speech(
    rng: np.random.Generator, n_samples: int, sample_rate: int = 16000, speaker: Speaker | None = None
) -> np.ndarray:
    """Speech-like float32 signal of `n_samples` at roughly unit RMS over its active parts."""
    speaker = speaker or random_speaker(rng)
    n_frames = n_samples // FRAME + 2
    frame_s = FRAME / sample_rate

    # Control tracks at the frame rate: loudness, voicing, pitch and formants.
    voiced_amp = np.zeros(n_frames)
    unvoiced_amp = np.zeros(n_frames)
    formants = np.zeros((n_frames, 3))
    accents = np.zeros(n_frames)  # log-pitch offset per syllable (stress, questions)
    pos = 0
    vowel = VOWELS[rng.integers(len(VOWELS))]
    for kind, length in _segments(rng, speaker, n_frames, frame_s):
        end = min(pos + length, n_frames)
        if end <= pos:
            break
        t = np.linspace(0, 1, end - pos, endpoint=False)
        shape = np.sin(np.pi * t) ** 0.6  # smooth onset and decay
        if kind == "voiced":
            voiced_amp[pos:end] = shape * rng.uniform(0.6, 1.0)
            accents[pos:end] = rng.normal(0, speaker.f0_range) + rng.normal(0, speaker.f0_range) * (t - 0.5)
            nxt = VOWELS[rng.integers(len(VOWELS))]
            formants[pos:end] = vowel + (nxt - vowel) * t[:, None]  # glide between vowel targets
            vowel = nxt
        elif kind == "unvoiced":
            unvoiced_amp[pos:end] = shape * rng.uniform(0.2, 0.5)
        formants[pos:end] = np.where(formants[pos:end] > 0, formants[pos:end], vowel)
        pos = end
    formants[pos:] = vowel
    formants *= speaker.formant_scale

    # Pitch: declining phrase contour + slow random wander + per-syllable accents.
    time_s = np.arange(n_frames) * frame_s
    wander = np.cumsum(rng.standard_normal(n_frames)) * 0.01
    wander -= np.linspace(0, wander[-1], n_frames)
    contour = 1.0 + speaker.f0_range * (np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * time_s + rng.uniform(0, 6)) * 0.5)
    accents = np.convolve(accents, np.hanning(9) / np.hanning(9).sum(), mode="same")  # no pitch jumps
    f0_frames = speaker.f0_hz * contour * np.exp(wander + accents)

    # Upsample control tracks to samples.
    frame_pos = np.arange(n_frames) * FRAME
    sample_pos = np.arange(n_samples)
    f0 = np.interp(sample_pos, frame_pos, f0_frames)
    v_amp = np.interp(sample_pos, frame_pos, voiced_amp)
    u_amp = np.interp(sample_pos, frame_pos, unvoiced_amp)

    # Voiced: harmonics k*f0 with -6 dB/octave tilt, shaped by the formant envelope (per frame).
    n_harm = int(0.45 * sample_rate / f0_frames.min())
    harmonics = np.arange(1, n_harm + 1)
    harm_freqs = f0_frames[:, None] * harmonics[None, :]
    harm_amp = _formant_envelope(harm_freqs, formants) / harmonics[None, :]
    harm_amp[harm_freqs > 0.45 * sample_rate] = 0.0
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate + rng.uniform(0, 2 * np.pi)
    # Per harmonic: amplitude linearly interpolated within each frame (repeat + slope), and
    # sin((k+1) phase) by the Chebyshev recurrence instead of one np.sin per harmonic (2x faster).
    frac = np.tile(np.arange(FRAME) / FRAME, n_frames)[:n_samples]
    slopes = np.diff(harm_amp, axis=0)
    two_cos, sin_prev, sin_k = 2 * np.cos(phase), np.zeros(n_samples), np.sin(phase)
    voiced = np.zeros(n_samples)
    for k in range(n_harm):
        amp = np.repeat(harm_amp[:-1, k], FRAME)[:n_samples] + np.repeat(slopes[:, k], FRAME)[:n_samples] * frac
        voiced += amp * sin_k
        sin_k, sin_prev = two_cos * sin_k - sin_prev, sin_k
    voiced /= np.sqrt(np.mean(voiced[v_amp > 0.3] ** 2)) if np.any(v_amp > 0.3) else 1.0

    aspiration = _band_noise(rng, n_samples, sample_rate, 500, 0.45 * sample_rate) * speaker.breathiness
    fricative = _band_noise(rng, n_samples, sample_rate, rng.uniform(1800, 3500), 0.45 * sample_rate)
    signal = v_amp * (voiced + aspiration) + u_amp * fricative
    return (signal / (np.sqrt(np.mean(signal[np.abs(signal) > 1e-4] ** 2)) + 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Procedural noise
# ----------------------------------------------------------------------------------------------
def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    out = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    out -= np.mean(out)
    return out / (np.std(out) + 1e-12)


def procedural_noise(rng: np.random.Generator, kind: str, n_samples: int, sample_rate: int = 16000) -> np.ndarray:
    """One of NOISE_KINDS, float32 at unit RMS."""
    t = np.arange(n_samples) / sample_rate
    if kind == "white":
        out = rng.standard_normal(n_samples)
    elif kind == "pink":
        out = _coloured_noise(rng, n_samples, 1.0)
    elif kind == "brown":
        out = _coloured_noise(rng, n_samples, 2.0)
    elif kind == "hum":  # mains hum with harmonics over a little pink noise
        mains = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
        out = sum(
            rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * mains * t + rng.uniform(0, 6)) for k in range(1, 8)
        )
        out = out / np.std(out) + 0.3 * _coloured_noise(rng, n_samples, 1.0)
    elif kind == "babble":  # a crowd of 3-6 procedural talkers
        out = sum(procedural_speech(rng, n_samples, sample_rate) for _ in range(int(rng.integers(3, 7))))
    elif kind == "fan":  # low-passed noise with a blade-rate tone and slow amplitude modulation
        out = _coloured_noise(rng, n_samples, 1.5) + 0.5 * np.sin(2 * np.pi * rng.uniform(80, 300) * t)
        out *= 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_KINDS}")
    out = np.asarray(out, dtype=np.float64)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Corpus on disk
# ----------------------------------------------------------------------------------------------
def _group_fraction(group: str) -> float:
    """A stable number in [0, 1) per group name (e.g. a LibriSpeech speaker folder)."""
    return int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) / 2**32


class SourceCorpus:
    """WAV/FLAC files under `root` (recursive). `clip()` reads a random stretch, resampled.

    Files are assigned to train/val/test by a hash of their first folder under `root` (the speaker
    in LibriSpeech's speaker/chapter/file layout), so the splits do not share speakers; a split that
    would get no files uses the whole corpus.
    """

    def __init__(self, root: str | Path, kind: str = "speech", split_fractions: tuple[float, float] = (0.8, 0.9)):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{kind} folder {self.root} does not exist; pass a folder of WAV/FLAC files")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not self.files:
            raise DataError(f"{kind} folder {self.root} has no .wav or .flac files (searched recursively)")
        self.kind = kind
        self.by_split: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
        for path in self.files:
            fraction = _group_fraction(path.relative_to(self.root).parts[0])
            split = "train" if fraction < split_fractions[0] else "val" if fraction < split_fractions[1] else "test"
            self.by_split[split].append(path)

    def clip(
        self, rng: np.random.Generator, n_samples: int, sample_rate: int, split: str = "train"
    ) -> tuple[np.ndarray, list[str]]:
        """`n_samples` of audio at `sample_rate`, concatenating files when one is too short."""
        files = self.by_split.get(split) or self.files
        pieces: list[np.ndarray] = []
        names: list[str] = []
        have = 0
        while have < n_samples:
            path = files[int(rng.integers(len(files)))]
            info = audio_info(path)
            need = int(np.ceil((n_samples - have) * info.samplerate / sample_rate)) + 16
            start = int(rng.integers(0, max(1, info.frames - need + 1)))
            data, rate = read_audio(path, start=start, frames=need, mono=False)
            if data.ndim == 2:  # multi-channel corpus file: take the first channel
                data = data[:, 0]
            data = resample(data, rate, sample_rate)
            if data.size == 0 or not np.any(data):
                if len(names) > 20:
                    raise DataError(f"{self.kind} corpus {self.root}: files are empty or silent (e.g. {path})")
                names.append(str(path.relative_to(self.root)))
                continue
            pieces.append(data)
            names.append(f"{path.relative_to(self.root)}@{start}")
            have += data.size
        out = np.concatenate(pieces)[:n_samples].astype(np.float64)
        return (out / (np.std(out) + 1e-12)).astype(np.float32), names
