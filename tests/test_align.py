"""`gsenet data align`: recovers an injected beamformer offset exactly and writes a consistent copy."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from fixtures.recordings import make_dataset

from gsenet.checks import check_dataset
from gsenet.cli import main
from gsenet.config import DataConfig

SR = 16000
BEHIND, AHEAD = 3687, 517  # samples: 230.4 ms behind (with extra samples, as in a real export), 32.3 ms ahead


def _read(path):
    return sf.read(str(path), dtype="float64")[0]


def _write(path, x):
    sf.write(str(path), x, SR, subtype="PCM_16")


@pytest.fixture()
def offset_dataset(tmp_path):
    root = make_dataset(tmp_path / "src", n_per_split=1, seconds=12.0)
    originals = {
        rec: {p.name: _read(p) for p in (root / rec).glob("*.wav")} for rec in ("train/rec_000", "val/rec_000")
    }
    beam = originals["train/rec_000"]["channel_1.wav"]
    lead_in = 1e-3 * np.random.default_rng(1).standard_normal(BEHIND)
    _write(root / "train/rec_000/channel_1.wav", np.concatenate([lead_in, beam]))  # behind and longer
    _write(root / "val/rec_000/channel_1.wav", originals["val/rec_000"]["channel_1.wav"][AHEAD:])  # ahead
    return root, originals


def test_align_recovers_the_injected_offsets_exactly(offset_dataset, tmp_path, capsys):
    from gsenet.align import plan_dataset

    root, originals = offset_dataset
    plans = {p.recording: p for p in plan_dataset(root, DataConfig())}
    assert plans["train/rec_000"].delay_samples == BEHIND
    assert plans["val/rec_000"].delay_samples == -AHEAD
    assert plans["test/rec_000"].delay_samples == 0
    assert all(len(set(p.window_delays)) == 1 and len(p.window_delays) == 3 for p in plans.values())

    dst = tmp_path / "aligned"
    assert main(["data", "align", str(root), str(dst)]) == 0
    out = capsys.readouterr().out
    assert f"train/rec_000: beam 230.4 ms behind the reference ({BEHIND} samples)" in out
    assert f"val/rec_000: beam 32.3 ms ahead of the reference ({AHEAD} samples)" in out
    assert "test/rec_000: beam already aligned" in out

    train = {name: _read(dst / "train/rec_000" / name) for name in originals["train/rec_000"]}
    n = len(originals["train/rec_000"]["channel_2.wav"])
    for name, x in originals["train/rec_000"].items():  # beam behind: only its lead-in is dropped
        np.testing.assert_array_equal(train[name], x[:n])
    val = {name: _read(dst / "val/rec_000" / name) for name in originals["val/rec_000"]}
    n = len(originals["val/rec_000"]["channel_2.wav"]) - AHEAD
    for name, x in originals["val/rec_000"].items():  # beam ahead: every other file loses its first samples
        np.testing.assert_array_equal(val[name], x[AHEAD : AHEAD + n])
    report = check_dataset(dst, DataConfig(), SR, use_cache=False)
    assert report.ok and all(abs(r.delay_ms) < 0.1 for r in report.recordings)
    assert not list(tmp_path.glob(".aligned.partial-*"))  # the staging folder was renamed into place


def test_align_refuses_a_delay_that_changes_within_a_recording(offset_dataset, tmp_path, capsys):
    root, _ = offset_dataset
    beam_path = root / "test/rec_000/channel_1.wav"
    beam = _read(beam_path)
    _write(beam_path, np.concatenate([beam[: 6 * SR], beam[6 * SR + 800 :]]))  # 50 ms cut out mid-way
    dst = tmp_path / "aligned"
    assert main(["data", "align", str(root), str(dst)]) == 1
    captured = capsys.readouterr()
    assert "test/rec_000: REFUSED: the delay is not constant within the recording" in captured.out
    assert "nothing was written" in captured.err
    assert not dst.exists() and not list(tmp_path.glob(".aligned*"))


def test_align_never_overwrites(offset_dataset, tmp_path, capsys):
    root, _ = offset_dataset
    (tmp_path / "taken").mkdir()
    assert main(["data", "align", str(root), str(tmp_path / "taken")]) == 1
    assert "already exists" in capsys.readouterr().err


def _arrays(dataset):
    return {item["name"]: {role: item[role].numpy() for role in ("beam", "ref", "target")} for item in dataset}


def test_align_auto_at_load_time_reads_what_data_align_writes(offset_dataset, tmp_path, monkeypatch, caplog):
    """data.align=auto: the linter reports each shift once; the datasets then read exactly the arrays
    of the copy `gsenet data align` writes, from the cached plan (no re-measuring, nothing per epoch)."""
    import gsenet.align
    from gsenet.data import RecordingDataset, SegmentDataset

    root, _ = offset_dataset
    dst = tmp_path / "aligned"
    assert main(["data", "align", str(root), str(dst)]) == 0
    auto = DataConfig(align="auto", segment_seconds=1.0, cache_dir=str(tmp_path / "cache"))
    plain = DataConfig(segment_seconds=1.0, cache_dir=str(tmp_path / "cache"))

    assert not check_dataset(root, plain, SR, use_cache=False).ok  # the beam behind is also longer
    report = check_dataset(root, auto, SR)
    assert report.ok, report.errors
    notes = [w for w in report.warnings if "aligned at load time (data.align=auto)" in w]
    assert len(notes) == 2  # train (behind) and val (ahead); test/ was already aligned: nothing to say
    assert sum("rec_000: aligned at load time (data.align=auto): beam 230.4 ms behind" in w for w in notes) == 1
    assert {r.key: round(r.delay_ms, 1) for r in report.recordings}["val/rec_000"] == -32.3

    measured = []
    monkeypatch.setattr(gsenet.align, "plan_recording", lambda *a: measured.append(a) or pytest.fail("re-measured"))
    caplog.set_level("INFO")
    for split in ("train", "val", "test"):
        loaded, written = (
            _arrays(RecordingDataset(root / split, auto, SR)),
            _arrays(RecordingDataset(dst / split, plain, SR)),
        )
        assert loaded.keys() == written.keys()
        for name in loaded:
            for role in ("beam", "ref", "target"):
                np.testing.assert_array_equal(loaded[name][role], written[name][role], err_msg=f"{split}/{name} {role}")
    segments = SegmentDataset(root / "train", auto, SR, seed=3, length=4)
    reference = SegmentDataset(dst / "train", plain, SR, seed=3, length=4)
    for epoch in (0, 1):
        segments.set_epoch(epoch), reference.set_epoch(epoch)
        for i in range(len(segments)):
            a, b = segments[i], reference[i]
            assert a["name"] == b["name"]
            for role in ("beam", "ref", "target"):
                np.testing.assert_array_equal(a[role].numpy(), b[role].numpy())
    assert not measured and not [r for r in caplog.records if "align" in r.getMessage()]


def test_align_auto_refuses_a_drifting_delay_naming_the_recording(offset_dataset, tmp_path):
    from gsenet.data import RecordingDataset
    from gsenet.errors import DataError

    root, _ = offset_dataset
    beam_path = root / "test/rec_000/channel_1.wav"
    beam = _read(beam_path)
    _write(beam_path, np.concatenate([beam[: 6 * SR], beam[6 * SR + 800 :]]))  # 50 ms cut out mid-way
    auto = DataConfig(align="auto", cache_dir=str(tmp_path / "cache"))
    report = check_dataset(root, auto, SR)
    assert report.bad_recordings == ["test/rec_000"]
    assert (
        f"{root / 'test/rec_000'}: data.align=auto cannot align this recording: the delay is not constant"
        in (report.errors[0])
    )
    with pytest.raises(DataError, match=r"test/rec_000: data\.align=auto cannot align this recording"):
        RecordingDataset(root / "test", auto, SR)
