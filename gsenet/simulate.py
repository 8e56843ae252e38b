"""Simulated training data in GSENet's layout: ROOT/{train,val,test}/<recording>/channel_*.wav.

Two schemes:

- "paper": the guided training scheme of Yang et al. (ICASSP 2023). Two closely spaced receivers
  in a shoebox room hear target speech s, a noise source n and an interfering talker i:
      y0 = s*r00 +     g_n n*r10 +     pi g_i i*r20      (channel_1, the "beamformer")
      y1 = s*r01 + a * g_n n*r11 + b * pi g_i i*r21      (channel_2, the raw reference mic)
  with random gains (dB): interference is attenuated in y0 by b >= 4 dB, noise is about the same,
  so the network learns to trust the contrast between the two inputs.
- "array": a real array pipeline. A small circular array hears the target, 0..K interfering
  talkers (point sources) and diffuse noise; a classical beamformer steered at the target
  (gsenet.beamform) makes channel_1; the raw mics are channel_2.. .

The ground truth (`SimulationConfig.target`) is the target speech at the receiver the guide
(channel_1) is aligned with: receiver 0 (y0) in the paper scheme, mic 0 (the beamformer's
reference, also channel_2) in the array scheme, so the target is sample-aligned with the guide's
speech. "direct" (default) keeps the direct path only, so the model must dereverberate as well as
denoise; "early" keeps the direct path and the reflections within `early_ms` (50 ms, as in the
DNS Challenge), so it does not. Every
recording's random generator is derived from (seed, index) only, so a recording does not depend
on how many are made or on how many workers make them. Each recording gets a meta.json with the
drawn parameters and the SIR/SNR of every channel, computed from the separately simulated
components (the beamformer is linear, so it is applied to each component as well).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsenet.audio import write_audio
from gsenet.config import SPLITS, ConfigError
from gsenet.errors import DataError
from gsenet.progress import progress_bar
from gsenet.speech import NOISE_KINDS, SourceCorpus, procedural_noise, procedural_speech, random_speaker

SCHEMES = ("paper", "array")
TARGETS = ("direct", "early")
MANIFEST = "simulation.json"
FORMAT_VERSION = 2  # 2: paper-scheme target aligned with y0 (was receiver 1); target option


@dataclass
class SimulationConfig:
    """Every distribution the simulation draws from. Gains are in dB; (mean, std) are Gaussians."""

    scheme: str = "paper"  # "paper" (guided training scheme) or "array" (beamformer on a mic array)
    target: str = "direct"  # ground truth: "direct" path, or "early" = direct + reflections <= early_ms
    early_ms: float = 50.0  # reflections kept by target="early" (after the direct path's arrival)
    duration_s: float = 4.0  # seconds per recording
    sample_rate: int = 16000
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/val/test (>= 1 val, 1 test if N >= 3)
    subtype: str = "PCM_16"  # WAV sample format ("PCM_16" or "FLOAT")
    level_dbfs: float = -28.0  # RMS of the reference mic after normalisation...
    peak: float = 0.9  # ...unless a channel would peak above this (all channels share one scale)
    speech_dir: str = ""  # WAV/FLAC speech corpus (recursive); "" = procedural speech
    noise_dir: str = ""  # WAV/FLAC noise corpus (recursive); "" = procedural noises
    noise_kinds: tuple[str, ...] = NOISE_KINDS  # procedural noise types to draw from

    # Room (both schemes): a shoebox with image-source reverberation.
    room_min_m: tuple[float, float, float] = (3.0, 3.0, 2.4)
    room_max_m: tuple[float, float, float] = (8.0, 7.0, 3.5)
    rt60_s: tuple[float, float] = (0.15, 0.45)  # uniform range
    max_order: int = 40  # cap on the image-source order (cost ~ order^3; caps shorten long tails)
    source_distance_m: tuple[float, float] = (0.7, 2.5)  # target (and talkers) from the receivers

    # Paper scheme.
    receiver_spacing_m: tuple[float, float] = (0.02, 0.06)
    noise_gain_db: tuple[float, float] = (-5.0, 10.0)  # g_n ~ N: noise vs speech level in y0
    interference_prob: float = 0.4  # pi ~ Bernoulli
    interference_gain_db: tuple[float, float] = (-3.0, 3.0)  # g_i ~ N: interferer vs speech in y0
    ref_noise_gain_db: tuple[float, float] = (0.0, 3.0)  # alpha ~ N, floored at ref_noise_gain_min_db
    ref_noise_gain_min_db: float = -4.0
    ref_interference_gain_db: tuple[float, float] = (4.0, 6.0)  # beta ~ N, floored at the min below
    ref_interference_gain_min_db: float = 4.0

    # Array scheme.
    n_mics: int = 3
    array_radius_m: float = 0.02
    beamformer: str = "mvdr"  # "ds", "mvdr" (estimated noise covariance) or "superdirective"
    max_interferers: int = 2  # talkers drawn uniformly from 0..max_interferers
    min_separation_deg: float = 30.0  # interferer azimuth at least this far from the target's
    sir_db: tuple[float, float] = (-5.0, 10.0)  # per interferer at the reference mic, uniform
    snr_db: tuple[float, float] = (0.0, 25.0)  # diffuse noise at the reference mic, uniform

    def validate(self) -> SimulationConfig:
        def check(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"simulation {key}: {message}")

        check(self.scheme in SCHEMES, "scheme", f"must be one of {SCHEMES}, got {self.scheme!r}")
        check(self.target in TARGETS, "target", f"must be one of {TARGETS}, got {self.target!r}")
        check(0 < self.early_ms <= 200, "early_ms", "must be in (0, 200] ms")
        check(self.duration_s > 0.1, "duration", "must be > 0.1 s")
        check(self.sample_rate >= 8000, "sample_rate", "must be >= 8000 Hz")
        check(len(self.split_fractions) == 3 and min(self.split_fractions) >= 0, "split_fractions", "3 values >= 0")
        check(self.subtype in ("PCM_16", "PCM_24", "FLOAT"), "subtype", "must be PCM_16, PCM_24 or FLOAT")
        check(0 < self.rt60_s[0] <= self.rt60_s[1], "rt60_s", "needs 0 < low <= high")
        check(
            all(k in NOISE_KINDS for k in self.noise_kinds) and self.noise_kinds, "noise_kinds", f"from {NOISE_KINDS}"
        )
        check(self.beamformer in ("ds", "mvdr", "superdirective"), "beamformer", "must be ds, mvdr or superdirective")
        check(self.n_mics >= 2, "n_mics", "needs at least 2 microphones")
        check(0 <= self.max_interferers <= 4, "max_interferers", "must be in 0..4")
        check(0 <= self.interference_prob <= 1, "interference_prob", "must be in [0, 1]")
        for name in ("speech_dir", "noise_dir"):
            path = getattr(self, name)
            check(not path or Path(path).is_dir(), name, f"folder {path} does not exist")
        return self


# ----------------------------------------------------------------------------------------------
# Splits and naming
# ----------------------------------------------------------------------------------------------
def split_counts(n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[int, int, int]:
    """(train, val, test) sizes: rounded fractions, with >= 1 val and >= 1 test when n >= 3."""
    total = sum(fractions) or 1.0
    n_val, n_test = (round(n * f / total) for f in fractions[1:])
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    elif n == 2:
        n_val, n_test = 1, 0
    else:
        n_val, n_test = 0, 0
    return n - n_val - n_test, n_val, n_test


def recording_plan(n: int, fractions: tuple[float, float, float]) -> list[tuple[int, str, str]]:
    """[(index, split, name)]: the first recordings train, then val, then test."""
    counts = split_counts(n, fractions)
    splits = [s for s, c in zip(SPLITS, counts, strict=True) for _ in range(c)]
    return [(i, split, f"sim{i:05d}") for i, split in enumerate(splits)]


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------
class Sources:
    """Speech and noise signals: from corpora when configured, else procedural."""

    def __init__(self, cfg: SimulationConfig):
        self.cfg = cfg
        self.speech = SourceCorpus(cfg.speech_dir, "speech") if cfg.speech_dir else None
        self.noise = SourceCorpus(cfg.noise_dir, "noise") if cfg.noise_dir else None

    def speech_clip(self, rng: np.random.Generator, n: int, split: str) -> tuple[np.ndarray, str]:
        if self.speech is None:
            speaker = random_speaker(rng)
            return procedural_speech(rng, n, self.cfg.sample_rate, speaker), f"procedural:f0={speaker.f0_hz:.0f}Hz"
        clip, names = self.speech.clip(rng, n, self.cfg.sample_rate, split)
        return clip, "+".join(names)

    def noise_clip(self, rng: np.random.Generator, n: int, split: str) -> tuple[np.ndarray, str]:
        if self.noise is None:
            kind = str(self.cfg.noise_kinds[int(rng.integers(len(self.cfg.noise_kinds)))])
            return procedural_noise(rng, kind, n, self.cfg.sample_rate), f"procedural:{kind}"
        clip, names = self.noise.clip(rng, n, self.cfg.sample_rate, split)
        return clip, "+".join(names)


# ----------------------------------------------------------------------------------------------
# Room acoustics
# ----------------------------------------------------------------------------------------------
def _draw_room(rng: np.random.Generator, cfg: SimulationConfig) -> tuple[np.ndarray, float, float, int]:
    """(dimensions, rt60, energy absorption, image-source order) of a shoebox that can have that RT60."""
    import pyroomacoustics as pra

    dims = rng.uniform(cfg.room_min_m, cfg.room_max_m)
    rt60 = float(rng.uniform(*cfg.rt60_s))
    while True:
        try:
            absorption, order = pra.inverse_sabine(rt60, dims, c=343.0)
            break
        except ValueError:  # too short an RT60 for this room: make it reverberant enough to exist
            rt60 *= 1.1
    return dims, rt60, float(absorption), int(min(order, cfg.max_order))


def _place(
    rng: np.random.Generator, dims: np.ndarray, center: np.ndarray, azimuth: float, distance: float
) -> np.ndarray:
    """A source position at (azimuth, distance) from `center`, pulled inside the room if needed."""
    height = rng.uniform(1.2, 1.9)
    az = np.radians(azimuth)
    for _ in range(20):
        pos = center + np.array([distance * np.cos(az), distance * np.sin(az), 0.0])
        pos[2] = min(height, dims[2] - 0.3)
        if np.all(pos[:2] > 0.3) and np.all(pos[:2] < dims[:2] - 0.3):
            return pos
        distance *= 0.85
    return np.clip(pos, 0.3, dims - 0.3)


def _room_rirs(dims, absorption, order, sources, mics, fs) -> list[list[np.ndarray]]:
    """rirs[source][mic] of one room (computed once for all its sources and microphones)."""
    import pyroomacoustics as pra

    room = pra.ShoeBox(dims, fs=fs, materials=pra.Material(absorption), max_order=order, air_absorption=False)
    for pos in sources:
        room.add_source(list(pos))
    room.add_microphone_array(np.asarray(mics, dtype=np.float64).T)
    room.compute_rir()
    return [[np.asarray(room.rir[m][s]) for m in range(len(mics))] for s in range(len(sources))]


def _direct_path(source, mic, dims, fs) -> np.ndarray:
    """The direct-path RIR alone, with the same delay convention as the reverberant RIRs."""
    return _room_rirs(dims, 0.5, 0, [source], [mic], fs)[0][0]


def _target_rir(cfg: SimulationConfig, rir: np.ndarray, source, mic, dims) -> np.ndarray:
    """The ground truth's RIR from the full RIR `rir` (source -> mic): the direct path alone, or
    (target="early") the full RIR cut `early_ms` after the direct path's arrival."""
    direct = _direct_path(source, mic, dims, cfg.sample_rate)
    if cfg.target == "direct":
        return direct
    arrival = int(np.argmax(np.abs(direct)))  # same delay convention as the full RIR
    return rir[: arrival + int(round(cfg.early_ms * cfg.sample_rate / 1000)) + 1]


def _convolve(signal: np.ndarray, rirs: list[np.ndarray]) -> np.ndarray:
    """[M, L]: `signal` through each RIR, cut to the signal's length."""
    from scipy.signal import fftconvolve

    n = len(signal)
    return np.stack([fftconvolve(signal, h)[:n] for h in rirs])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _ratio_db(signal: np.ndarray, other: np.ndarray) -> float | None:
    """10 log10(P_signal / P_other); None when `other` is silent (e.g. no interferer)."""
    if not np.any(other):
        return None
    return round(20 * np.log10(_rms(signal) / _rms(other)), 2)


def _db(gain_db: float) -> float:
    return float(10 ** (gain_db / 20))


def _rt60_of(rir: np.ndarray, fs: int) -> float | None:
    import pyroomacoustics as pra

    try:
        return round(float(pra.experimental.measure_rt60(rir, fs)), 3)
    except Exception:  # too short a tail to fit: not worth failing a recording over
        return None


# ----------------------------------------------------------------------------------------------
# One recording
# ----------------------------------------------------------------------------------------------
@dataclass
class Simulated:
    """One recording before normalisation. Channel lists start with channel_1 (the beamformer)."""

    speech: list[np.ndarray]  # target speech (reverberant) as each channel hears it
    noise: list[np.ndarray]
    interference: list[np.ndarray]
    target: np.ndarray  # ground truth aligned with channel_1's speech (see the module docstring)
    meta: dict

    @property
    def channels(self) -> list[np.ndarray]:
        return [s + n + i for s, n, i in zip(self.speech, self.noise, self.interference, strict=True)]


def _receiver_center(rng: np.random.Generator, dims: np.ndarray, margin: float) -> np.ndarray:
    return np.array(
        [rng.uniform(margin, dims[0] - margin), rng.uniform(margin, dims[1] - margin), rng.uniform(0.8, 1.5)]
    )


def _room_meta(dims, rt60, absorption, order, rir, fs) -> dict:
    return {
        "dims_m": [round(float(d), 3) for d in dims],
        "rt60_s": round(rt60, 3),
        "rt60_measured_s": _rt60_of(rir, fs),
        "absorption": round(absorption, 4),
        "max_order": order,
    }


def simulate_paper(rng: np.random.Generator, cfg: SimulationConfig, sources: Sources, split: str) -> Simulated:
    """The guided training scheme: y0 (channel_1) and y1 (channel_2) with contrasting interference."""
    fs, n = cfg.sample_rate, int(round(cfg.duration_s * cfg.sample_rate))
    dims, rt60, absorption, order = _draw_room(rng, cfg)
    center = _receiver_center(rng, dims, 0.6)
    spacing, angle = rng.uniform(*cfg.receiver_spacing_m), rng.uniform(0, 2 * np.pi)
    offset = 0.5 * spacing * np.array([np.cos(angle), np.sin(angle), 0.0])
    receivers = [center - offset, center + offset]  # receiver 0 -> y0, receiver 1 -> y1 (reference)
    azimuths = rng.uniform(0, 360, size=3)  # speech, noise, interferer
    positions = [_place(rng, dims, center, az, rng.uniform(*cfg.source_distance_m)) for az in azimuths]

    g_n = float(rng.normal(*cfg.noise_gain_db))
    present = bool(rng.random() < cfg.interference_prob)
    g_i = float(rng.normal(*cfg.interference_gain_db))
    alpha = max(float(rng.normal(*cfg.ref_noise_gain_db)), cfg.ref_noise_gain_min_db)
    beta = max(float(rng.normal(*cfg.ref_interference_gain_db)), cfg.ref_interference_gain_min_db)

    speech, speech_name = sources.speech_clip(rng, n, split)
    noise, noise_name = sources.noise_clip(rng, n, split)
    rirs = _room_rirs(dims, absorption, order, positions if present else positions[:2], receivers, fs)
    s = _convolve(speech, rirs[0])
    nz = _convolve(noise, rirs[1])
    nz *= _rms(s[0]) / _rms(nz[0])  # 0 dB speech-to-noise in y0 before the gains
    nz[0] *= _db(g_n)
    nz[1] *= _db(g_n + alpha)
    inter, inter_name = np.zeros_like(s), None
    if present:
        talker, inter_name = sources.speech_clip(rng, n, split)
        inter = _convolve(talker, rirs[2])
        inter *= _rms(s[0]) / _rms(inter[0])
        inter[0] *= _db(g_i)
        inter[1] *= _db(g_i + beta)
    # The target is aligned with y0's speech (the guide), like the array scheme's with the
    # beamformer's: y0 and y1 are up to ~3 samples apart, and a 1-sample offset caps SI-SDR at 9 dB.
    target = _convolve(speech, [_target_rir(cfg, rirs[0][0], positions[0], receivers[0], dims)])[0]

    meta = {
        "room": _room_meta(dims, rt60, absorption, order, rirs[0][1], fs),
        "receivers_m": [[round(float(v), 3) for v in r] for r in receivers],
        "receiver_spacing_m": round(float(spacing), 4),
        "sources": {
            "speech": {
                "name": speech_name,
                "position_m": positions[0].round(3).tolist(),
                "azimuth_deg": round(float(azimuths[0]), 1),
            },
            "noise": {
                "name": noise_name,
                "position_m": positions[1].round(3).tolist(),
                "azimuth_deg": round(float(azimuths[1]), 1),
            },
            "interferer": None
            if not present
            else {
                "name": inter_name,
                "position_m": positions[2].round(3).tolist(),
                "azimuth_deg": round(float(azimuths[2]), 1),
            },
        },
        "gains_db": {
            "g_n": round(g_n, 2),
            "pi": int(present),
            "g_i": round(g_i, 2),
            "alpha": round(alpha, 2),
            "beta": round(beta, 2),
        },
        "n_interferers": int(present),
    }
    return Simulated(speech=list(s), noise=list(nz), interference=list(inter), target=target, meta=meta)


def _separated_azimuths(rng: np.random.Generator, target_az: float, k: int, min_sep: float) -> list[float]:
    """k azimuths at least `min_sep` degrees from the target (and best effort from each other)."""
    out: list[float] = []
    for _ in range(k):
        for _ in range(100):
            az = float(rng.uniform(0, 360))
            taken = [target_az, *out]
            if all(abs((az - t + 180) % 360 - 180) >= min_sep for t in taken):
                break
        out.append(az)
    return out


def simulate_array(rng: np.random.Generator, cfg: SimulationConfig, sources: Sources, split: str) -> Simulated:
    """A circular array, talkers at random directions and diffuse noise; channel_1 = beamformer."""
    from gsenet.beamform import circular_array, design_beamformer, diffuse_noise

    fs, n = cfg.sample_rate, int(round(cfg.duration_s * cfg.sample_rate))
    dims, rt60, absorption, order = _draw_room(rng, cfg)
    center = _receiver_center(rng, dims, 0.6)
    rotation = float(rng.uniform(0, 360))  # array orientation in the room
    local = circular_array(cfg.n_mics, cfg.array_radius_m)
    c, s_ = np.cos(np.radians(rotation)), np.sin(np.radians(rotation))
    local = local @ np.array([[c, s_, 0], [-s_, c, 0], [0, 0, 1]])  # rotate about z
    mics = local + center

    target_az = float(rng.uniform(0, 360))
    n_inter = int(rng.integers(0, cfg.max_interferers + 1))
    inter_az = _separated_azimuths(rng, target_az, n_inter, cfg.min_separation_deg)
    positions = [_place(rng, dims, center, az, rng.uniform(*cfg.source_distance_m)) for az in [target_az, *inter_az]]
    rirs = _room_rirs(dims, absorption, order, positions, mics, fs)

    speech, speech_name = sources.speech_clip(rng, n, split)
    s = _convolve(speech, rirs[0])
    inter = np.zeros_like(s)
    talkers = []
    for j, az in enumerate(inter_az, start=1):
        clip, name = sources.speech_clip(rng, n, split)
        part = _convolve(clip, rirs[j])
        sir = float(rng.uniform(*cfg.sir_db))
        inter += part * (_rms(s[0]) / _rms(part[0]) / _db(sir))
        sep = abs((az - target_az + 180) % 360 - 180)
        talkers.append({"name": name, "azimuth_deg": round(az, 1), "separation_deg": round(sep, 1), "sir_db": round(sir, 2),
                        "position_m": positions[j].round(3).tolist()})  # fmt: skip
    colour, noise_name = sources.noise_clip(rng, n, split)
    snr = float(rng.uniform(*cfg.snr_db))
    nz = diffuse_noise(rng, local, n, fs, source=colour)
    nz *= _rms(s[0]) / _rms(nz[0]) / _db(snr)

    # Steer at the target's true direction from the array centre (azimuth and elevation).
    to_target = positions[0] - center
    steer_az = float(np.degrees(np.arctan2(to_target[1], to_target[0])))
    steer_el = float(np.degrees(np.arcsin(to_target[2] / np.linalg.norm(to_target))))
    bf = design_beamformer(cfg.beamformer, local, fs, steer_az, steer_el, noise=inter + nz, ref=0)
    target = _convolve(speech, [_target_rir(cfg, rirs[0][0], positions[0], mics[0], dims)])[0]

    meta = {
        "room": _room_meta(dims, rt60, absorption, order, rirs[0][0], fs),
        "array": {
            "n_mics": cfg.n_mics,
            "radius_m": cfg.array_radius_m,
            "rotation_deg": round(rotation, 1),
            "center_m": center.round(3).tolist(),
        },  # fmt: skip
        "beamformer": cfg.beamformer,
        "steering": {"azimuth_deg": round(steer_az, 1), "elevation_deg": round(steer_el, 1)},
        "sources": {
            "speech": {
                "name": speech_name,
                "azimuth_deg": round(target_az, 1),
                "position_m": positions[0].round(3).tolist(),
                "distance_m": round(float(np.linalg.norm(to_target)), 3),
            },  # fmt: skip
            "interferers": talkers,
            "noise": {"name": noise_name, "field": "diffuse", "snr_db": round(snr, 2)},
        },
        "n_interferers": n_inter,
    }
    return Simulated(
        speech=[bf(s), *s], noise=[bf(nz), *nz], interference=[bf(inter), *inter], target=target, meta=meta
    )


def simulate_recording(index: int, split: str, seed: int, cfg: SimulationConfig, sources: Sources) -> Simulated:
    """Recording `index`: a function of (seed, index, cfg) only. Levels normalised, meta filled in."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    sim = (simulate_paper if cfg.scheme == "paper" else simulate_array)(rng, cfg, sources, split)

    # One scale for all channels and the target: reference at level_dbfs unless something peaks.
    channels = sim.channels
    scale = _db(cfg.level_dbfs) / _rms(channels[1])
    peak = max(float(np.max(np.abs(x))) for x in [*channels, sim.target])
    scale = min(scale, cfg.peak / max(peak, 1e-9))
    for parts in (sim.speech, sim.noise, sim.interference):
        parts[:] = [(p * scale).astype(np.float32) for p in parts]
    sim.target = (sim.target * scale).astype(np.float32)

    roles = ["beamformer" if cfg.scheme == "array" else "y0 (guided input)", "reference"]
    roles += [f"mic {m}" for m in range(1, len(channels) - 1)]
    per_channel = {}
    for k, role in enumerate(roles):
        per_channel[f"channel_{k + 1}.wav"] = {
            "role": role,
            "sir_db": _ratio_db(sim.speech[k], sim.interference[k]),
            "snr_db": _ratio_db(sim.speech[k], sim.noise[k]),
            "sinr_db": _ratio_db(sim.speech[k], sim.noise[k] + sim.interference[k]),
        }
    beam, ref = per_channel["channel_1.wav"], per_channel["channel_2.wav"]
    sim.meta = {
        "format_version": FORMAT_VERSION,
        "scheme": cfg.scheme,
        "seed": seed,
        "index": index,
        "split": split,
        "sample_rate": cfg.sample_rate,
        "duration_s": cfg.duration_s,
        "condition": "interfering_speech" if sim.meta["n_interferers"] else "noise_only",
        "target": {"kind": cfg.target, "early_ms": cfg.early_ms if cfg.target == "early" else None},
        **sim.meta,
        "scale": round(scale, 6),
        "channels": per_channel,
        "sir_gain_db": None if beam["sir_db"] is None else round(beam["sir_db"] - ref["sir_db"], 2),
        "sinr_gain_db": round(beam["sinr_db"] - ref["sinr_db"], 2),
    }
    return sim


def write_recording(folder: Path, sim: Simulated, cfg: SimulationConfig) -> None:
    """channel_*.wav, ground_truth.wav, then meta.json last (its presence marks a finished recording)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, samples in enumerate(sim.channels, start=1):
        write_audio(folder / f"channel_{k}.wav", samples, cfg.sample_rate, cfg.subtype)
    write_audio(folder / "ground_truth.wav", sim.target, cfg.sample_rate, cfg.subtype)
    _write_json(folder / "meta.json", sim.meta)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# ----------------------------------------------------------------------------------------------
# A dataset
# ----------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(cfg: SimulationConfig) -> None:
    _WORKER["sources"] = Sources(cfg)


def _make_one(job: tuple[int, str, str, int, SimulationConfig, str]) -> str:
    index, split, name, seed, cfg, out = job
    sim = simulate_recording(index, split, seed, cfg, _WORKER["sources"])
    write_recording(Path(out) / split / name, sim, cfg)
    return name


def _manifest(cfg: SimulationConfig, recordings: int, seed: int, plan: list[tuple[int, str, str]]) -> dict:
    cfg_dict = json.loads(json.dumps(dataclasses.asdict(cfg)))
    splits = {s: [name for _, split, name in plan if split == s] for s in SPLITS}
    return {
        "format_version": FORMAT_VERSION,
        "recordings": recordings,
        "seed": seed,
        "config": cfg_dict,
        "splits": splits,
    }


def _prepare_output(out: Path, manifest: dict, overwrite: bool) -> None:
    """Refuse to mix datasets: resume only a dataset made with identical settings."""
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        try:
            existing = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            existing = {}
        if existing == manifest:
            return  # same settings: finished recordings are kept, the rest are made
        if not overwrite:
            raise DataError(
                f"{out} holds a simulated dataset made with other settings ({manifest_path}); "
                "pass --overwrite to replace it, or choose another output folder"
            )
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        manifest_path.unlink()
    elif out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not a simulated dataset (no {MANIFEST}); choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(manifest_path, manifest)


def simulate_dataset(
    out: str | Path,
    recordings: int,
    seed: int,
    scheme: str | None = None,
    duration_s: float | None = None,
    sample_rate: int | None = None,
    *,
    config: SimulationConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    **fields,
) -> Path:
    """Write `recordings` simulated recordings under out/{train,val,test}/ and return `out`.

    `scheme`, `duration_s`, `sample_rate` and any other SimulationConfig field (as keywords)
    override `config` (defaults: "paper", 4.0 s, 16 kHz). Re-running with the same settings
    resumes (finished recordings are skipped); other settings need `overwrite=True`.
    """
    cfg = config or SimulationConfig()
    given = {"scheme": scheme, "duration_s": duration_s, "sample_rate": sample_rate, **fields}
    try:
        cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not None})
    except TypeError as exc:
        names = [f.name for f in dataclasses.fields(SimulationConfig)]
        raise ConfigError(f"simulation: {exc}; valid settings: {names}") from None
    cfg.validate()
    if recordings < 1:
        raise ConfigError(f"simulation: --recordings must be >= 1, got {recordings}")
    out = Path(out)
    plan = recording_plan(recordings, cfg.split_fractions)
    _prepare_output(out, _manifest(cfg, recordings, seed, plan), overwrite)
    todo = [(i, split, name) for i, split, name in plan if not (out / split / name / "meta.json").is_file()]
    jobs = [(i, split, name, seed, cfg, str(out)) for i, split, name in todo]
    with progress_bar(len(plan), f"simulate {cfg.scheme}", enabled=progress, unit="rec") as bar:
        bar.update(len(plan) - len(todo))  # made by an earlier, interrupted run
        if workers <= 1 or len(jobs) <= 1:
            _init_worker(cfg)
            for job in jobs:
                _make_one(job)
                bar.update()
        else:
            import multiprocessing as mp

            # spawn: workers do not inherit threads or large state from the parent (e.g. torch, Ray).
            with mp.get_context("spawn").Pool(min(workers, len(jobs)), _init_worker, (cfg,)) as pool:
                for _ in pool.imap_unordered(_make_one, jobs):
                    bar.update()
    return out


def load_simulation_config(out: str | Path) -> tuple[SimulationConfig, int]:
    """(config, seed) a dataset was made with, from its simulation.json; with `simulate_recording`
    they re-create any recording's separate components (speech, noise, interference)."""
    from gsenet.config import from_dict

    path = Path(out) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path} is missing: {out} was not made by `gsenet simulate`")
    manifest = json.loads(path.read_text())
    return from_dict(manifest["config"], SimulationConfig), int(manifest["seed"])


def summarize_dataset(out: str | Path) -> dict:
    """Counts per split and condition and mean SIR/SINR of beamformer vs reference, from meta.json files."""
    metas = [json.loads(p.read_text()) for p in sorted(Path(out).glob("*/*/meta.json"))]
    summary: dict = {"recordings": len(metas), "splits": {}, "conditions": {}}
    for meta in metas:
        summary["splits"][meta["split"]] = summary["splits"].get(meta["split"], 0) + 1
        summary["conditions"][meta["condition"]] = summary["conditions"].get(meta["condition"], 0) + 1
    for key in ("sir_db", "sinr_db"):
        for channel, label in (("channel_1.wav", "beam"), ("channel_2.wav", "ref")):
            values = [m["channels"][channel][key] for m in metas if m["channels"][channel][key] is not None]
            summary[f"{label}_{key}"] = round(float(np.mean(values)), 2) if values else None
    gains = [m["sir_gain_db"] for m in metas if m["sir_gain_db"] is not None]
    summary["sir_gain_db"] = round(float(np.mean(gains)), 2) if gains else None
    return summary
