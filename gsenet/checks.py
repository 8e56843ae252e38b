"""The dataset linter: `gsenet data check PATH`, and the same checks before every training run.

It reads every file of every recording once (in blocks) and reports, per split: recordings, hours,
sample rates, channel counts, clipping, silent and NaN/Inf files, length mismatches, recordings
shorter than a training segment, and the delay between the beamformer and the reference mic
(GCC-PHAT over a few seconds). Errors make the dataset unusable (training refuses it, or skips
the bad recordings with data.skip_bad_recordings=true); warnings are printed and training goes on.

What is an error: a missing/unreadable/truncated file, a stereo file, mixed sample rates within a
recording, NaN/Inf samples, a silent beam/reference/target, different lengths within a recording
(unless data.length_policy=trim), a missing train/ or val/ split or an empty split.
What is a warning: clipping, a silent extra microphone, |delay| above data.max_delay_ms, recordings
shorter than one training segment (skipped for training, used whole for validation), a missing
test/ split, files at another rate than the model's (they are resampled once and cached).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from gsenet.align import cached_plan, estimate_delay
from gsenet.audio import audio_info, read_audio
from gsenet.config import SPLITS, DataConfig
from gsenet.errors import DataError
from gsenet.storage import cache_root, resolve_data_root

log = logging.getLogger(__name__)

REQUIRED_SPLITS = ("train", "val")
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped (int16 full scale is 0.99997)
# A float WAV's full scale is 1.0; a sample 100x beyond it is a wrong scale or corrupt bytes (its
# square overflows float32: a non-finite loss at the first step that reads it).
MAX_ABS_SAMPLE = 100.0
CLIP_WARN_FRACTION = 1e-3  # warn when more than 0.1 % of a file's samples are clipped
SILENCE_DB = -80.0  # RMS below this (dBFS) is a silent file
DELAY_WINDOW_S = 4.0  # seconds of beam and reference cross-correlated to estimate their delay
BLOCK = 1 << 18  # samples read at a time while scanning a file
MAX_LISTED = 40  # messages shown by format_table / raise_if_errors (--json has them all)


@dataclass
class FileStats:
    name: str
    sample_rate: int = 0
    channels: int = 0
    frames: int = 0
    peak: float = 0.0
    rms_db: float = -200.0
    nonfinite: int = 0  # NaN or Inf samples
    clipped: int = 0


@dataclass
class RecordingReport:
    split: str
    name: str
    folder: str
    files: list[FileStats] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sample_rate: int = 0
    channels: int = 0  # channel_*.wav files
    delay_ms: float | None = None  # beam behind reference (positive) or ahead (negative)
    length_mismatch: bool = False
    short: bool = False  # shorter than one training segment

    @property
    def key(self) -> str:
        return f"{self.split}/{self.name}"


# ----------------------------------------------------------------------------------------------
# Signals
# ----------------------------------------------------------------------------------------------
def scan_file(path: Path) -> FileStats:
    """Header and content statistics of one audio file; raises DataError if it cannot be read."""
    info = audio_info(path)
    stats = FileStats(path.name, info.samplerate, info.channels, info.frames)
    if info.channels != 1:
        return stats  # the caller reports it; statistics of a wrongly shaped file mean nothing
    energy, count = 0.0, 0
    can_be_nonfinite = info.subtype in ("FLOAT", "DOUBLE")  # integer PCM holds no NaN/Inf: skip that pass
    try:
        for block in sf.blocks(str(path), blocksize=BLOCK, dtype="float32", always_2d=False):
            if can_be_nonfinite:
                finite = np.isfinite(block)
                if not finite.all():
                    stats.nonfinite += int(block.size - finite.sum())
                    block = block[finite]
            if block.size:
                magnitude = np.abs(block)
                stats.peak = max(stats.peak, float(magnitude.max()))
                stats.clipped += int(np.count_nonzero(magnitude >= CLIP_LEVEL))
                energy += float(np.dot(block.astype(np.float64), block))  # float32 overflows at 1e19
                count += block.size
    except Exception as exc:
        raise DataError(
            f"{path}: cannot read samples ({exc}); the file is truncated or corrupt, re-export it"
        ) from None
    stats.rms_db = float(10 * np.log10(energy / count + 1e-20)) if count else -200.0
    return stats


# ----------------------------------------------------------------------------------------------
# One recording
# ----------------------------------------------------------------------------------------------
def _channel_index(path: Path) -> tuple[int, str]:
    """Sort key: channel_1, channel_2, ..., channel_10, then other files by name."""
    match = re.fullmatch(r"channel_(\d+)\.wav", path.name)
    return (int(match.group(1)) if match else 10**9, path.name)


def check_recording(folder: Path, split: str, cfg: DataConfig, sample_rate: int) -> RecordingReport:
    report = RecordingReport(split, folder.name, str(folder))
    err, warn = report.errors.append, report.warnings.append
    roles = {cfg.beam_channel: "beamformer", cfg.ref_channel: "reference mic", cfg.target_file: "target"}
    channels = sorted(folder.glob("channel_*.wav"), key=_channel_index)
    report.channels = len(channels)
    if not any(folder.iterdir()):
        err(f"{folder}: empty recording folder; add channel_1.wav, channel_2.wav, ..., ground_truth.wav or delete it")
        return report
    for name, role in roles.items():
        if not (folder / name).is_file():
            err(f"{folder / name}: {role} file is missing; every recording needs {', '.join(roles)}")
    paths = sorted({*channels, *(folder / n for n in roles if (folder / n).is_file())}, key=_channel_index)
    stats = {}
    for path in paths:
        try:
            stats[path.name] = scan_file(path)
        except DataError as exc:
            err(str(exc))
    report.files = list(stats.values())
    _check_file_contents(report, folder, roles)
    _check_rates_and_lengths(report, folder, cfg)
    if cfg.align == "auto":
        _plan_alignment(report, folder, cfg)
    report.short = split == "train" and 0 < report.seconds < cfg.segment_seconds
    if report.short:
        warn(
            f"{folder}: {report.seconds:.2f} s is shorter than one training segment ({cfg.segment_seconds} s); not used for training"
        )
    if cfg.align != "auto":
        _check_delay(report, folder, cfg)
    return report


def _check_file_contents(report: RecordingReport, folder: Path, roles: dict[str, str]) -> None:
    """Per file: mono, finite, sane amplitude, not empty, not silent (an error for the beam,
    reference or target), not clipped."""
    err, warn = report.errors.append, report.warnings.append
    for s in report.files:
        path = folder / s.name
        critical = s.name in roles
        if s.channels != 1:
            err(
                f"{path}: has {s.channels} channels, expected mono (one file per microphone); "
                f"split it into one file per channel, e.g. `sox {s.name} out.wav remix 1`"
            )
        elif s.nonfinite:
            err(f"{path}: {s.nonfinite} NaN/Inf samples; fix the pipeline that wrote it and re-export")
        elif s.peak > MAX_ABS_SAMPLE:
            err(
                f"{path}: absurd amplitude (peak {s.peak:.3g}; full scale is 1.0, the check allows "
                f"+-{MAX_ABS_SAMPLE:g}); it was written at the wrong scale or is corrupt: re-export it in [-1, 1]"
            )
        elif s.frames == 0:
            err(f"{path}: holds no samples; re-export it or remove the recording")
        elif _silent(s):
            message = f"{path}: silent (RMS {s.rms_db:.0f} dBFS); check the microphone and the export"
            if critical:  # a silent target or input cannot be learned from (and SI-SDR is undefined)
                err(message + ", or remove the recording")
            else:
                warn(message)
        elif s.frames and s.clipped / s.frames > CLIP_WARN_FRACTION:
            warn(f"{path}: {100 * s.clipped / s.frames:.2f}% of samples clipped (|x| >= {CLIP_LEVEL}); lower the gain")


def _check_rates_and_lengths(report: RecordingReport, folder: Path, cfg: DataConfig) -> None:
    """One sample rate for all files (sets report.sample_rate and .seconds), and equal lengths
    (or, with data.length_policy=trim, a warning that they are trimmed to the shortest)."""
    err, warn = report.errors.append, report.warnings.append
    usable = [s for s in report.files if s.channels == 1]
    rates = {s.sample_rate for s in usable}
    if len(rates) > 1:
        detail = ", ".join(f"{s.name}: {s.sample_rate} Hz" for s in usable)
        err(f"{folder}: files are at different sample rates ({detail}); export them all at one rate")
    elif rates:
        report.sample_rate = rates.pop()
        lengths = {s.name: s.frames for s in usable}
        report.seconds = min(lengths.values()) / report.sample_rate
        if len(set(lengths.values())) > 1 and cfg.align != "auto":  # auto: cut to the aligned length below
            report.length_mismatch = True
            # Compare with the target (else the most common length): says which file has extra samples.
            reference = lengths.get(cfg.target_file) or max(lengths.values(), key=list(lengths.values()).count)
            detail = ", ".join(
                f"{n}: {k - reference:+d} samples ({(k - reference) / report.sample_rate:+.3f} s)"
                for n, k in lengths.items()
                if k != reference
            )
            message = f"{folder}: files differ in length ({reference} samples, except {detail})"
            if cfg.length_policy == "trim":
                warn(message + "; trimmed to the shortest (data.length_policy=trim)")
            else:
                err(message + "; a short file may be truncated: fix the export, or set data.length_policy=trim")


def _plan_alignment(report: RecordingReport, folder: Path, cfg: DataConfig) -> None:
    """data.align=auto: the delay and cut training will apply (gsenet.align, cached for the workers);
    what it does is a warning, so it is printed once with the other warnings, never per epoch."""
    if report.errors or report.sample_rate == 0:
        return
    plan = cached_plan(folder, cfg)
    if plan.problem:
        report.errors.append(
            f"{folder}: data.align=auto cannot align this recording: {plan.problem}; fix or remove it "
            f"(or set data.skip_bad_recordings=true)"
        )
        return
    report.delay_ms = 1000 * plan.delay_samples / plan.sample_rate
    report.seconds = plan.length / plan.sample_rate
    if plan.delay_samples or any(s.frames != plan.length for s in report.files):
        report.warnings.append(f"{folder}: aligned at load time (data.align=auto): {plan.action()}")


def _check_delay(report: RecordingReport, folder: Path, cfg: DataConfig) -> None:
    beam, ref = (next((s for s in report.files if s.name == n), None) for n in (cfg.beam_channel, cfg.ref_channel))
    if report.errors or not beam or not ref or report.sample_rate == 0:
        return
    rate = report.sample_rate
    frames = min(beam.frames, ref.frames)
    window = min(frames, int(DELAY_WINDOW_S * rate))
    start = (frames - window) // 2  # the middle: recordings often start and end with silence
    beam_x, _ = read_audio(folder / cfg.beam_channel, start, window)
    ref_x, _ = read_audio(folder / cfg.ref_channel, start, window)
    report.delay_ms = 1000 * estimate_delay(beam_x, ref_x, rate)
    if abs(report.delay_ms) > cfg.max_delay_ms:
        where = "behind" if report.delay_ms > 0 else "ahead of"
        report.warnings.append(
            f"{folder / cfg.beam_channel}: beamformer is {abs(report.delay_ms):.1f} ms {where} the reference mic "
            f"{cfg.ref_channel} (limit data.max_delay_ms={cfg.max_delay_ms}); the model cannot learn across that: "
            "align the channels (e.g. trim the leading samples of the later one) and re-export"
        )


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------
@dataclass
class DatasetReport:
    root: str
    sample_rate: int
    recordings: list[RecordingReport] = field(default_factory=list)
    dataset_errors: list[str] = field(default_factory=list)
    dataset_warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.dataset_errors + [e for r in self.recordings for e in r.errors]

    @property
    def warnings(self) -> list[str]:
        return self.dataset_warnings + [w for r in self.recordings for w in r.warnings]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def bad_recordings(self) -> list[str]:
        """ "split/name" of every recording with an error (what data.skip_bad_recordings leaves out)."""
        return [r.key for r in self.recordings if r.errors]

    @property
    def summary(self) -> dict:
        splits = {}
        for split in SPLITS:
            recs = [r for r in self.recordings if r.split == split]
            if not recs:
                continue
            delays = [abs(r.delay_ms) for r in recs if r.delay_ms is not None]
            splits[split] = {
                "recordings": len(recs),
                "hours": sum(r.seconds for r in recs) / 3600,
                "sample_rates": _counts(r.sample_rate for r in recs if r.sample_rate),
                "channels": _counts(r.channels for r in recs),
                "clipped_files": sum(s.clipped / max(s.frames, 1) > CLIP_WARN_FRACTION for r in recs for s in r.files),
                "silent_files": sum(_silent(s) for r in recs for s in r.files),
                "nonfinite_files": sum(s.nonfinite > 0 for r in recs for s in r.files),
                "length_mismatches": sum(r.length_mismatch for r in recs),
                "short_for_training": sum(r.short for r in recs),
                "delay_ms_median_abs": float(np.median(delays)) if delays else None,
                "delay_ms_max_abs": max(delays) if delays else None,
                "bad_recordings": sum(bool(r.errors) for r in recs),
            }
        return {"root": self.root, "model_sample_rate": self.sample_rate, "splits": splits,
                "errors": len(self.errors), "warnings": len(self.warnings)}  # fmt: skip

    def to_dict(self) -> dict:
        return {"ok": self.ok, "summary": self.summary, "errors": self.errors, "warnings": self.warnings,
                "bad_recordings": self.bad_recordings, "recordings": [asdict(r) for r in self.recordings]}  # fmt: skip

    def format_table(self) -> str:
        summary = self.summary["splits"]
        rows = [
            ("recordings", "recordings", "{}"),
            ("hours", "hours", "{:.3f}"),
            ("sample rates (Hz)", "sample_rates", "{}"),
            ("channel files", "channels", "{}"),
            ("clipped files", "clipped_files", "{}"),
            ("silent files", "silent_files", "{}"),
            ("NaN/Inf files", "nonfinite_files", "{}"),
            ("length mismatches", "length_mismatches", "{}"),
            ("shorter than segment", "short_for_training", "{}"),
            ("|delay| beam-ref median ms", "delay_ms_median_abs", "{:.1f}"),
            ("|delay| beam-ref max ms", "delay_ms_max_abs", "{:.1f}"),
            ("bad recordings", "bad_recordings", "{}"),
        ]
        lines = [
            f"dataset {self.root} (model rate {self.sample_rate} Hz)",
            f"{'':28}" + "".join(f"{s:>14}" for s in summary),
        ]
        for label, key, fmt in rows:
            cells = [_cell(values[key], fmt) for values in summary.values()]
            lines.append(f"{label:28}" + "".join(f"{c:>14}" for c in cells))
        for title, messages in (("errors", self.errors), ("warnings", self.warnings)):
            if messages:
                lines.append(f"\n{title} ({len(messages)}):")
                lines += _listed(messages)
        lines.append(
            "\nOK" if self.ok else f"\nFAILED: {len(self.errors)} error(s) in {len(self.bad_recordings)} recording(s)"
        )
        return "\n".join(lines)

    def raise_if_errors(self, skip_bad: bool = False) -> None:
        """Raise DataError listing the errors. With `skip_bad`, only problems that skipping bad
        recordings cannot fix raise (dataset-level errors, a required split with no good recording)."""
        errors = self.errors
        if skip_bad:
            errors = list(self.dataset_errors)
            for split in REQUIRED_SPLITS:
                recs = [r for r in self.recordings if r.split == split]
                if recs and all(r.errors for r in recs):
                    errors.append(
                        f"{self.root}/{split}: every recording has errors, nothing is left after skipping them"
                    )
        if errors:
            hint = "" if skip_bad else ", or set data.skip_bad_recordings=true to leave the bad recordings out"
            raise DataError(
                f"dataset {self.root} failed its checks ({len(errors)} error(s)):\n"
                + "\n".join(_listed(errors))
                + f"\nfix them (`gsenet data check {self.root}` lists everything){hint}"
            )


def _silent(s: FileStats) -> bool:
    return s.channels == 1 and s.frames > 0 and not s.nonfinite and s.rms_db < SILENCE_DB


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(str(k) for k in value) if len(value) <= 2 else f"{min(value)}..{max(value)}"
    return fmt.format(value)


def _listed(messages: list[str]) -> list[str]:
    lines = [f"  - {m}" for m in messages[:MAX_LISTED]]
    if len(messages) > MAX_LISTED:
        lines.append(f"  ... and {len(messages) - MAX_LISTED} more (`gsenet data check --json` lists all)")
    return lines


def check_dataset(root: Path, cfg: DataConfig, sample_rate: int, *, use_cache: bool = True) -> DatasetReport:
    """Check every recording of ROOT/{train,val,test}; never raises for bad data (see the report).

    With `use_cache`, a recording whose files (names, sizes, mtimes) and settings are unchanged
    since the last check reuses that result (CACHE/checks/), so sweeps do not re-read the data per trial.
    """
    root = Path(root)
    report = DatasetReport(str(root), sample_rate)
    if not root.is_dir():
        report.dataset_errors.append(
            f"{root}: dataset folder does not exist; fix the path or create it with `gsenet simulate`"
        )
        return report
    jobs = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            message = f"{split_dir}: split folder is missing; expected {root}/{{train,val,test}}/<recording>/..."
            (report.dataset_errors if split in REQUIRED_SPLITS else report.dataset_warnings).append(message)
            continue
        folders = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            report.dataset_errors.append(f"{split_dir}: no recording folders; add recordings or remove the split")
        jobs += [(folder, split) for folder in folders]
    extra = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in SPLITS and not p.name.startswith("."))
    if extra:
        report.dataset_warnings.append(f"{root}: ignoring folders that are not splits: {', '.join(extra)}")
    cache = ReportCache(root, cfg, sample_rate) if use_cache else None

    def check(job: tuple[Path, str]) -> RecordingReport:
        if cache is None:
            return check_recording(job[0], job[1], cfg, sample_rate)
        key = cache.key(*job)  # taken before reading, so a file changed meanwhile is checked again next time
        result = cache.get(f"{job[1]}/{job[0].name}", key) or check_recording(job[0], job[1], cfg, sample_rate)
        cache.put(result, key)
        return result

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # I/O and numpy release the GIL
        report.recordings = list(pool.map(check, jobs))
    if cache:
        cache.save()
    _dataset_level_warnings(report, cfg)
    return report


class ReportCache:
    """Per-recording check results of one dataset root, keyed by the files' names, sizes and mtimes
    and the settings that change the result; one JSON file per root, replaced atomically."""

    VERSION = 2  # bump when the checks change (2: absurd amplitudes)

    def __init__(self, root: Path, cfg: DataConfig, sample_rate: int):
        settings = [self.VERSION, sample_rate, cfg.beam_channel, cfg.ref_channel, cfg.target_file,
                    cfg.length_policy, cfg.segment_seconds, cfg.max_delay_ms, cfg.align, cfg.align_tolerance_ms]  # fmt: skip
        self.settings = json.dumps(settings)
        self.path = (
            cache_root(cfg.cache_dir) / "checks" / (hashlib.sha1(str(root.resolve()).encode()).hexdigest() + ".json")
        )
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.fresh: dict = {}

    def key(self, folder: Path, split: str) -> str:
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
        return hashlib.sha1(json.dumps([self.settings, split, files]).encode()).hexdigest()

    def get(self, name: str, key: str) -> RecordingReport | None:
        entry = self.entries.get(name)
        if not entry or entry["key"] != key:
            return None
        report = RecordingReport(**entry["report"])
        report.files = [FileStats(**f) for f in entry["report"]["files"]]
        return report

    def put(self, report: RecordingReport, key: str) -> None:
        self.fresh[report.key] = {"key": key, "report": asdict(report)}

    def save(self) -> None:
        """Write this run's entries (recordings no longer in the dataset drop out)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.fresh))
        tmp.replace(self.path)  # concurrent runs: the last complete file wins, never a partial one


def _dataset_level_warnings(report: DatasetReport, cfg: DataConfig) -> None:
    resampled = [r for r in report.recordings if r.sample_rate and r.sample_rate != report.sample_rate]
    if resampled:
        rates = ", ".join(map(str, _counts(r.sample_rate for r in resampled)))
        listed = ", ".join(r.folder for r in resampled[:5]) + (" ..." if len(resampled) > 5 else "")
        report.dataset_warnings.append(
            f"{len(resampled)} recording(s) at {rates} Hz will be resampled to {report.sample_rate} Hz "
            f"(once, cached under data.cache_dir): {listed}"
        )
    channel_counts = _counts(r.channels for r in report.recordings)
    if len(channel_counts) > 1:
        report.dataset_warnings.append(f"recordings have different numbers of channel files: {channel_counts}")
    delayed = [r for r in report.recordings if r.delay_ms is not None and abs(r.delay_ms) > cfg.max_delay_ms]
    if len(delayed) > 1:
        median = float(np.median([r.delay_ms for r in delayed]))
        report.dataset_warnings.append(
            f"{len(delayed)} recording(s) have the beamformer more than {cfg.max_delay_ms} ms off the reference "
            f"(median {median:.1f} ms): likely a systematic offset in the export"
        )


def local_data_root(cfg: DataConfig) -> Path:
    """data.path as a local folder: a gs:// dataset is downloaded to this node's cache, waiting at
    most data.gcs_timeout_s for the bucket (the driver and every training worker use this)."""
    return resolve_data_root(cfg.path, cfg.cache_dir, timeout=cfg.gcs_timeout_s)


def prepare_data(cfg: DataConfig, sample_rate: int) -> tuple[Path, DatasetReport]:
    """What training does first, on the driver: resolve data.path (gs:// -> local cache), check the
    whole dataset, refuse it on errors (or skip and list the bad recordings with
    data.skip_bad_recordings). Warnings are logged before any error is raised.

    Build the datasets with `exclude=report.bad_recordings`.
    """
    root = local_data_root(cfg)
    report = check_dataset(root, cfg, sample_rate)
    for warning in report.warnings:
        log.warning("data: %s", warning)
    # With skipping on, what skipping cannot fix (a missing split, nothing left) still fails here.
    report.raise_if_errors(skip_bad=cfg.skip_bad_recordings)
    if report.bad_recordings:
        log.warning(
            "data: skipping %d bad recording(s) (data.skip_bad_recordings=true): %s",
            len(report.bad_recordings), ", ".join(sorted(report.bad_recordings)),
        )  # fmt: skip
    return root, report
