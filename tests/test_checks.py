import json
import os

import numpy as np
import pytest
from fixtures.recordings import break_recording, make_dataset

from gsenet.align import estimate_delay
from gsenet.checks import check_dataset, prepare_data
from gsenet.cli import main
from gsenet.config import DataConfig
from gsenet.errors import DataError

SR = 16000
CFG = DataConfig(segment_seconds=1.0)  # recordings are 1.5 s: keeps the tests fast


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GSENET_CACHE_DIR", str(tmp_path / "cache"))  # keep check results out of ~/.cache
    return tmp_path / "cache"


@pytest.fixture
def root(tmp_path):
    return make_dataset(tmp_path / "data", n_per_split={"train": 3, "val": 2, "test": 1}, seconds=1.5, seed=5)


def test_clean_dataset_passes_with_a_summary(root):
    report = check_dataset(root, CFG, SR)
    assert report.ok and report.errors == [] and report.bad_recordings == []
    train = report.summary["splits"]["train"]
    assert train["recordings"] == 3 and train["hours"] == pytest.approx(3 * 1.5 / 3600)
    assert train["sample_rates"] == {SR: 3} and train["channels"] == {4: 3}
    assert train["delay_ms_max_abs"] == 0.0 and train["nonfinite_files"] == 0 and train["clipped_files"] == 0
    table = report.format_table()
    assert "recordings" in table and "|delay| beam-ref max ms" in table and table.rstrip().endswith("OK")
    report.raise_if_errors()  # no error: nothing raised


@pytest.mark.parametrize("shift_ms", [-12.5, 0.0, 3.0, 230.0])
def test_gcc_phat_finds_the_delay(shift_ms):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(3 * SR).astype(np.float32)
    shift = int(shift_ms * SR / 1000)
    beam = np.roll(ref, shift) + 0.3 * rng.standard_normal(3 * SR).astype(np.float32)
    assert estimate_delay(beam, ref, SR) * 1000 == pytest.approx(shift_ms, abs=1000 / SR)


# kind -> (error?, file or folder named in the message, words of the message)
BROKEN = {
    "truncated": (True, "rec_000/channel_1.wav", "not a readable audio file"),
    "truncated_data": (True, "rec_000", "channel_2.wav: -"),
    "corrupt": (True, "rec_000/channel_2.wav", "not a readable audio file"),
    "stereo": (True, "rec_000/channel_1.wav", "expected mono"),
    "missing_target": (True, "rec_000/ground_truth.wav", "target file is missing"),
    "missing_beam": (True, "rec_000/channel_1.wav", "beamformer file is missing"),
    "empty": (True, "rec_000", "empty recording folder"),
    "sample_rate": (True, "rec_000", "different sample rates"),
    "nan": (True, "rec_000/channel_2.wav", "NaN/Inf samples"),
    "inf": (True, "rec_000/ground_truth.wav", "NaN/Inf samples"),
    "length_mismatch": (True, "rec_000", "channel_1.wav: +4000 samples (+0.250 s)"),
    "silent": (True, "rec_000/ground_truth.wav", "silent"),
    "clipped": (False, "rec_000/channel_2.wav", "of samples clipped"),
    "delay": (False, "rec_000/channel_1.wav", "beamformer is 230.0 ms behind the reference mic"),
    "short": (False, "rec_000", "shorter than one training segment"),
    "all_rates": (False, "", "will be resampled to 16000 Hz"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_each_breakage_is_reported_naming_the_file(root, kind, capsys):
    is_error, where, words = BROKEN[kind]
    break_recording(root / "train" / "rec_000", kind)
    # The CLI exits 1 on errors, 0 on warnings only; its JSON report holds the messages.
    assert main(["data", "check", str(root), "data.segment_seconds=1", "--json"]) == (1 if is_error else 0)
    report = json.loads(capsys.readouterr().out)
    messages = report["errors"] if is_error else report["warnings"]
    hits = [m for m in messages if words in m and str(root / "train" / where) in m]
    assert hits, f"no message with {words!r} naming {where}: {report['errors']} {report['warnings']}"
    assert report["bad_recordings"] == (["train/rec_000"] if is_error else [])


def test_trim_policy_turns_length_mismatch_into_a_warning(root):
    break_recording(root / "val" / "rec_001", "length_mismatch")
    report = check_dataset(root, DataConfig(segment_seconds=1.0, length_policy="trim"), SR)
    assert report.ok and any("trimmed to the shortest" in w for w in report.warnings)


def test_dataset_level_errors(tmp_path, capsys):
    assert not check_dataset(tmp_path / "missing", DataConfig(), SR).ok
    root = make_dataset(tmp_path / "d", n_per_split=1, splits=("train",))
    (root / "val").mkdir()
    report = check_dataset(root, CFG, SR)
    assert any(str(root / "val") in e and "no recording folders" in e for e in report.errors)
    assert any(str(root / "test") in w and "split folder is missing" in w for w in report.warnings)
    assert main(["data", "check", str(tmp_path / "missing")]) == 1
    assert "dataset folder does not exist" in capsys.readouterr().err


def test_raise_if_errors_and_skip_bad(root):
    break_recording(root / "train" / "rec_001", "nan")
    report = check_dataset(root, CFG, SR)
    with pytest.raises(DataError, match=r"(?s)rec_001/channel_2\.wav: \d+ NaN/Inf.*skip_bad_recordings=true"):
        report.raise_if_errors()
    report.raise_if_errors(skip_bad=True)  # train still has good recordings
    for name in ("rec_000", "rec_002"):
        break_recording(root / "train" / name, "stereo")
    with pytest.raises(DataError, match="every recording has errors"):
        check_dataset(root, CFG, SR).raise_if_errors(skip_bad=True)


def test_prepare_data_refuses_or_skips(root):
    break_recording(root / "val" / "rec_000", "silent")
    with pytest.raises(DataError, match=r"val/rec_000/ground_truth\.wav: silent"):
        prepare_data(DataConfig(path=str(root), segment_seconds=1.0), SR)
    local, report = prepare_data(DataConfig(path=str(root), segment_seconds=1.0, skip_bad_recordings=True), SR)
    assert local == root and report.bad_recordings == ["val/rec_000"]


def test_cli_json_and_max_delay(root, capsys):
    break_recording(root / "test" / "rec_000", "delay")
    assert main(["data", "check", str(root), "data.segment_seconds=1", "--json", "--max-delay-ms", "300"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["warnings"] == []
    assert report["summary"]["splits"]["test"]["delay_ms_max_abs"] == pytest.approx(230.0)
    assert main(["data", "check", str(root), "data.max_delay_ms=100", "data.segment_seconds=1"]) == 0
    assert "230.0 ms behind" in capsys.readouterr().out


def test_unchanged_recordings_reuse_the_cached_result(root, cache_dir):
    assert check_dataset(root, CFG, SR).ok and list((cache_dir / "checks").glob("*.json"))
    target = root / "val" / "rec_000" / "ground_truth.wav"
    stat = target.stat()
    break_recording(root / "val" / "rec_000", "silent")  # same size (zeros, same PCM_16 length)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and same mtime: looks unchanged
    assert check_dataset(root, CFG, SR).ok  # the cached result was used
    assert not check_dataset(root, CFG, SR, use_cache=False).ok
    target.touch()  # any real change (mtime or size) is checked again
    assert check_dataset(root, CFG, SR).bad_recordings == ["val/rec_000"]
    assert main(["data", "check", str(root), "data.segment_seconds=1", "--no-cache"]) == 1
