"""`gsenet data align SRC DST`: an aligned copy of a dataset whose beamformer channel is offset.

Real exports can have the beamformer a constant few hundred ms behind (or ahead of) the
microphones, often with extra samples. Per recording:

    measure  the beam-to-reference delay by GCC-PHAT (the linter's `estimate_delay`) in several
             windows spread over the recording; refuse the recording if they disagree
    shift    drop the beam's first `delay` samples when it is behind, or every other file's first
             `-delay` samples when it is ahead (microphones and target share the reference's clock)
    trim     cut every file to the common length, so all channels and the target stay in step

Every recording is measured before anything is written; DST is written in a temporary folder next
to it and renamed into place at the end, so an interrupted or refused run leaves no half dataset.
Files keep their sample rate and subtype; other files (meta.json, ...) are copied as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from gsenet.config import SPLITS, DataConfig
from gsenet.errors import DataError
from gsenet.storage import cache_root

MAX_LAG_S = 0.5  # largest beam-to-reference delay searched


def estimate_delay(beam: np.ndarray, ref: np.ndarray, sample_rate: int, max_lag_s: float = MAX_LAG_S) -> float:
    """Delay of `beam` relative to `ref` in seconds (positive: beam is behind), by GCC-PHAT."""
    n = min(len(beam), len(ref))
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(beam[:n], size) * np.conj(np.fft.rfft(ref[:n], size))
    spectrum /= np.abs(spectrum) + 1e-12  # PHAT: keep only the phase, so every frequency votes equally
    correlation = np.fft.irfft(spectrum, size)
    max_lag = min(int(max_lag_s * sample_rate), n - 1)
    lags = np.concatenate([correlation[-max_lag:], correlation[: max_lag + 1]]) if max_lag else correlation[:1]
    return (int(np.argmax(lags)) - max_lag) / sample_rate


WINDOWS = 3  # delay estimates per recording (start, middle, end)
WINDOW_S = 4.0  # seconds per estimate (as the linter)
QUIET_DB = -50.0  # a window this quiet (beam or ref RMS, dBFS) gives no usable estimate


@dataclass
class Alignment:
    """What aligning one recording does (or why it is refused)."""

    recording: str  # split/name
    sample_rate: int = 0
    delay_samples: int = 0  # beam behind the reference by this many samples (negative: ahead)
    window_delays: list[int] = field(default_factory=list)  # each window's estimate, in samples
    trim_start: dict[str, int] = field(default_factory=dict)  # file -> leading samples dropped
    length: int = 0  # samples of every file afterwards
    problem: str = ""  # non-empty: refused

    def describe(self) -> str:
        if self.problem:
            return f"{self.recording}: REFUSED: {self.problem}"
        return f"{self.recording}: {self.action()}"

    def action(self) -> str:
        """What aligning does to this recording, in words."""
        ms = 1000 * self.delay_samples / self.sample_rate
        where = "behind" if ms > 0 else "ahead of"
        shift = (
            f"beam {abs(ms):.1f} ms {where} the reference ({abs(self.delay_samples)} samples); dropped the first "
            f"{abs(self.delay_samples)} samples of {', '.join(sorted(f for f, n in self.trim_start.items() if n))}"
            if self.delay_samples
            else "beam already aligned with the reference"
        )
        return f"{shift}; every file cut to {self.length} samples ({self.length / self.sample_rate:.2f} s)"


def _rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


def window_delays(beam: np.ndarray, ref: np.ndarray, rate: int, windows: int = WINDOWS) -> list[int]:
    """Beam-to-reference delay in samples, estimated in `windows` windows spread over the overlap.
    Windows too quiet to say anything are left out."""
    n = min(len(beam), len(ref))
    size = min(n, int(WINDOW_S * rate))
    # Spread over the recording; they overlap (or coincide) when it is shorter than `windows` windows.
    starts = sorted({int(s) for s in np.linspace(0, n - size, windows)})
    max_lag_s = min(0.5, size / rate / 2)  # the linter's 0.5 s, but leave half the window overlapping
    delays = []
    for start in starts:
        b, r = beam[start : start + size], ref[start : start + size]
        if _rms_db(b) < QUIET_DB or _rms_db(r) < QUIET_DB:
            continue
        delays.append(int(round(estimate_delay(b, r, rate, max_lag_s) * rate)))
    return delays


def plan_recording(folder: Path, recording: str, cfg: DataConfig, tolerance_ms: float) -> Alignment:
    """Measure one recording and decide the shift and trim (reads the beam and reference only)."""
    plan = Alignment(recording)
    beam_path, ref_path = folder / cfg.beam_channel, folder / cfg.ref_channel
    wavs = sorted(folder.glob("*.wav"))
    missing = [p.name for p in (beam_path, ref_path, folder / cfg.target_file) if not p.is_file()]
    if missing:
        plan.problem = f"missing {', '.join(missing)}"
        return plan
    try:
        infos = {p.name: sf.info(str(p)) for p in wavs}
    except RuntimeError as exc:
        plan.problem = f"unreadable file ({exc}); run `gsenet data check` first"
        return plan
    rates = {i.samplerate for i in infos.values()}
    if len(rates) != 1 or any(i.channels != 1 for i in infos.values()):
        plan.problem = "files differ in sample rate or are not mono; run `gsenet data check` first"
        return plan
    plan.sample_rate = rate = rates.pop()
    beam, _ = sf.read(str(beam_path), dtype="float64")
    ref, _ = sf.read(str(ref_path), dtype="float64")
    plan.window_delays = window_delays(beam, ref, rate)
    if not plan.window_delays:
        plan.problem = "beam or reference is silent everywhere: no delay can be measured"
        return plan
    spread = max(plan.window_delays) - min(plan.window_delays)
    if 1000 * spread / rate > tolerance_ms:
        shown = ", ".join(f"{1000 * d / rate:.1f}" for d in plan.window_delays)
        plan.problem = (
            f"the delay is not constant within the recording ({shown} ms at its start, middle and end; "
            f"more than --tolerance-ms {tolerance_ms} apart): a drifting clock or an edit, which one shift cannot fix"
        )
        return plan
    plan.delay_samples = delay = int(np.median(plan.window_delays))
    for name in infos:
        behind = name == cfg.beam_channel
        plan.trim_start[name] = max(delay, 0) if behind else max(-delay, 0)
    plan.length = min(infos[name].frames - plan.trim_start[name] for name in infos)
    if plan.length <= 0:
        plan.problem = f"nothing is left after removing a {1000 * delay / rate:.1f} ms offset"
    return plan


PLAN_CACHE_VERSION = 1  # bump when plan_recording changes


def cached_plan(folder: Path, cfg: DataConfig) -> Alignment:
    """`plan_recording` for data.align=auto, computed once per recording version on this node.

    The linter (on the driver) and every training worker ask for the same plan: the first reads
    the audio, the others get it from CACHE/align/, keyed by the files' names, sizes and mtimes and
    the settings that change the result.
    """
    folder = Path(folder)
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    settings = [PLAN_CACHE_VERSION, cfg.beam_channel, cfg.ref_channel, cfg.target_file, cfg.align_tolerance_ms]
    key = hashlib.sha1(json.dumps([settings, str(folder.resolve()), files]).encode()).hexdigest()
    path = cache_root(cfg.cache_dir) / "align" / f"{key}.json"
    try:
        return Alignment(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    plan = plan_recording(folder, f"{folder.parent.name}/{folder.name}", cfg, cfg.align_tolerance_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(asdict(plan)))
    tmp.replace(path)  # concurrent processes write the same content; never a partial file
    return plan


def loading_view(folder: Path, cfg: DataConfig) -> tuple[tuple[int, int, int], int]:
    """For data.align=auto: ((beam, ref, target) leading samples to skip, common length), at the
    files' own rate; the same shift and cut `gsenet data align` writes. Raises on a refused recording."""
    plan = cached_plan(folder, cfg)
    if plan.problem:
        raise DataError(
            f"{folder}: data.align=auto cannot align this recording: {plan.problem}; "
            "fix or remove it (or set data.skip_bad_recordings=true)"
        )
    starts = tuple(plan.trim_start[name] for name in (cfg.beam_channel, cfg.ref_channel, cfg.target_file))
    return starts, plan.length


def recordings(root: Path) -> list[tuple[Path, str]]:
    """(folder, "split/name") of every recording folder, split by split."""
    found = []
    for split in SPLITS:
        split_dir = root / split
        if split_dir.is_dir():
            found += [(p, f"{split}/{p.name}") for p in sorted(split_dir.iterdir()) if p.is_dir()]
    return found


def plan_dataset(src: Path, cfg: DataConfig, tolerance_ms: float = 2.0) -> list[Alignment]:
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: dataset folder does not exist")
    found = recordings(src)
    if not found:
        raise DataError(f"{src}: no recordings in {'/, '.join(SPLITS)}/ (expected SRC/train/<recording>/...)")
    return [plan_recording(folder, name, cfg, tolerance_ms) for folder, name in found]


def write_recording(src_folder: Path, dst_folder: Path, plan: Alignment) -> None:
    dst_folder.mkdir(parents=True)
    for path in sorted(src_folder.iterdir()):
        if path.is_file() and path.name in plan.trim_start:
            info = sf.info(str(path))
            data, rate = sf.read(str(path), dtype="float64")  # exact for PCM_16/24 and float files
            start = plan.trim_start[path.name]
            sf.write(str(dst_folder / path.name), data[start : start + plan.length], rate, subtype=info.subtype)
        elif path.is_file():
            shutil.copy2(path, dst_folder / path.name)


def align_dataset(src: Path, dst: Path, cfg: DataConfig, plans: list[Alignment], progress=None) -> Path:
    """Write the aligned copy of every planned recording to `dst` (must not exist), atomically."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise DataError(f"{dst} already exists; pick a new folder (the aligned copy never overwrites)")
    refused = [p for p in plans if p.problem]
    if refused:
        raise DataError(f"{len(refused)} recording(s) cannot be aligned; nothing was written")
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    try:
        for plan in progress(plans) if progress else plans:
            write_recording(src / plan.recording, staging / plan.recording, plan)
        for extra in sorted(src.iterdir()):  # simulation.json and other dataset-level files
            if extra.is_file():
                shutil.copy2(extra, staging / extra.name)
        staging.rename(dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dst
