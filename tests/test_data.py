import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from fixtures.recordings import break_recording, make_dataset, make_recording

from gsenet.config import DataConfig
from gsenet.data import RecordingDataset, SegmentDataset, collate_batch, load_recordings
from gsenet.errors import DataError

SR = 16000


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GSENET_CACHE_DIR", str(tmp_path / "cache"))  # keep caches out of ~/.cache


@pytest.fixture
def cfg(tmp_path):
    return DataConfig(segment_seconds=0.5, cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def root(tmp_path):
    return make_dataset(tmp_path / "data", n_per_split=3, seconds=(1.0, 2.0), seed=3)


def full(path):
    return sf.read(str(path), dtype="float32")[0]


def test_fixture_writes_the_layout(root):
    rec = root / "train" / "rec_000"
    assert sorted(p.name for p in rec.iterdir()) == [f"channel_{i}.wav" for i in (1, 2, 3, 4)] + ["ground_truth.wav"]
    lengths = {sf.info(str(p)).frames for p in rec.iterdir()}
    assert len(lengths) == 1 and 16000 <= lengths.pop() <= 32000


def test_segments_are_deterministic_per_seed_epoch_and_index(root, cfg):
    ds = SegmentDataset(root / "train", cfg, SR, seed=7, length=6)
    first = [ds[i]["name"] for i in range(6)]
    assert first == [SegmentDataset(root / "train", cfg, SR, seed=7, length=6)[i]["name"] for i in range(6)]
    assert first != [SegmentDataset(root / "train", cfg, SR, seed=8, length=6)[i]["name"] for i in range(6)]
    ds.set_epoch(1)
    assert first != [ds[i]["name"] for i in range(6)]
    ds.set_epoch(0)
    assert first == [ds[i]["name"] for i in range(6)]
    with pytest.raises(IndexError):
        ds[6]


def test_segment_has_the_same_offset_in_every_channel(root, cfg):
    ds = SegmentDataset(root / "train", cfg, SR, seed=1, length=4)
    for i in range(4):
        item = ds[i]
        name, offset = item["name"].split("@")
        offset = int(offset)
        assert item["length"] == 8000 and item["beam"].shape == (8000,) and item["beam"].dtype == torch.float32
        folder = root / "train" / name
        for role, file in (("beam", "channel_1.wav"), ("ref", "channel_2.wav"), ("target", "ground_truth.wav")):
            np.testing.assert_array_equal(item[role].numpy(), full(folder / file)[offset : offset + 8000])


def test_offsets_cover_every_valid_start(tmp_path, cfg):
    make_recording(tmp_path / "split" / "a", seconds=0.5 + 2 / SR, seed=1)  # exactly 3 valid offsets
    ds = SegmentDataset(tmp_path / "split", cfg, SR, length=200)
    assert {ds.locate(i)[1] for i in range(200)} == {0, 1, 2}


def test_channels_are_configurable(root, cfg):
    cfg.beam_channel, cfg.ref_channel = "channel_3.wav", "channel_4.wav"
    item = RecordingDataset(root / "val", cfg, SR)[0]
    np.testing.assert_array_equal(item["beam"].numpy(), full(root / "val" / "rec_000" / "channel_3.wav"))
    np.testing.assert_array_equal(item["ref"].numpy(), full(root / "val" / "rec_000" / "channel_4.wav"))


def test_recordings_keep_true_lengths_and_collate_pads_with_zeros(root, cfg):
    ds = RecordingDataset(root / "val", cfg, SR)
    items = [ds[i] for i in range(len(ds))]
    lengths = [sf.info(str(root / "val" / f"rec_{i:03d}" / "ground_truth.wav")).frames for i in range(3)]
    assert [it["length"] for it in items] == lengths and len(set(lengths)) == 3
    batch = collate_batch(items)
    assert batch["beam"].shape == (3, max(lengths)) and batch["beam"].dtype == torch.float32
    assert batch["lengths"].dtype == torch.long and batch["lengths"].tolist() == lengths
    assert batch["names"] == ["rec_000", "rec_001", "rec_002"]
    for row, n in enumerate(lengths):
        assert torch.equal(batch["target"][row, :n], items[row]["target"])
        assert not batch["target"][row, n:].any()


def test_dataloader_workers_give_the_same_batches(root, cfg):
    ds = SegmentDataset(root / "train", cfg, SR, seed=2, length=8)
    batches = []
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=collate_batch)
        batches.append([b["beam"] for b in loader])
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))


def test_short_recordings_are_skipped_for_training_with_a_warning(tmp_path, cfg, caplog):
    make_recording(tmp_path / "train" / "long", seconds=1.0, seed=1)
    make_recording(tmp_path / "train" / "short", seconds=0.3, seed=2)
    with caplog.at_level(logging.WARNING, logger="gsenet.data"):
        ds = SegmentDataset(tmp_path / "train", cfg, SR, length=4)
    assert [r.name for r in ds.recordings] == ["long"]
    assert "short" in caplog.text and "shorter than one training segment" in caplog.text
    assert len(RecordingDataset(tmp_path / "train", cfg, SR)) == 2  # validation keeps it, whole
    cfg.segment_seconds = 5.0
    with pytest.raises(DataError, match="segment_seconds"):
        SegmentDataset(tmp_path / "train", cfg, SR, length=4)


def test_other_sample_rates_are_resampled_once_and_cached(tmp_path, cfg):
    root = make_dataset(tmp_path / "d8k", n_per_split={"val": 1}, seconds=1.0, sample_rate=8000, splits=("val",))
    ds = RecordingDataset(root / "val", cfg, SR)
    rec = ds.recordings[0]
    assert rec.source_rate == 8000 and rec.frames == 16000 and rec.beam.is_relative_to(tmp_path / "cache")
    assert sf.info(str(rec.beam)).samplerate == SR
    item = ds[0]
    assert item["length"] == 16000 and torch.isfinite(item["beam"]).all()
    mtime = rec.beam.stat().st_mtime_ns
    again = RecordingDataset(root / "val", cfg, SR).recordings[0]
    assert again.beam == rec.beam and again.beam.stat().st_mtime_ns == mtime  # not recomputed


@pytest.mark.parametrize(
    "kind, match",
    [
        ("stereo", r"channel_1\.wav: has 2 channels, expected mono.*sox"),
        ("missing_target", r"ground_truth\.wav: target file is missing"),
        ("empty", r"channel_1\.wav: beam file is missing \(folder holds: nothing\)"),
        ("sample_rate", r"rec_000: files are at different sample rates \(.*channel_2\.wav: 8000 Hz"),
        ("length_mismatch", r"rec_000: files differ in length.*data\.length_policy=trim"),
        ("truncated", r"channel_1\.wav: not a readable audio file"),
        ("corrupt", r"channel_2\.wav: not a readable audio file"),
    ],
)
def test_bad_recordings_raise_naming_the_file(root, cfg, kind, match):
    break_recording(root / "val" / "rec_000", kind)
    with pytest.raises(DataError, match=match):
        RecordingDataset(root / "val", cfg, SR)


def test_length_policy_trim_cuts_to_the_shortest(root, cfg, caplog):
    break_recording(root / "val" / "rec_000", "length_mismatch")
    cfg.length_policy = "trim"
    with caplog.at_level(logging.WARNING, logger="gsenet.data"):
        ds = RecordingDataset(root / "val", cfg, SR)
    assert ds[0]["length"] == sf.info(str(root / "val" / "rec_000" / "ground_truth.wav")).frames
    assert "trimming to the shortest" in caplog.text


def test_skip_bad_recordings_lists_and_skips(root, cfg, caplog):
    break_recording(root / "train" / "rec_001", "stereo")
    cfg.skip_bad_recordings = True
    with caplog.at_level(logging.WARNING, logger="gsenet.data"):
        names = [r.name for r in load_recordings(root / "train", cfg, SR)]
    assert names == ["rec_000", "rec_002"] and "rec_001" in caplog.text
    assert [r.name for r in load_recordings(root / "train", cfg, SR, exclude={"train/rec_000"})] == ["rec_002"]


def test_missing_or_empty_split_is_an_error(tmp_path, cfg):
    with pytest.raises(DataError, match="split folder is missing"):
        RecordingDataset(tmp_path / "nope", cfg, SR)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no recording folders"):
        SegmentDataset(tmp_path / "empty", cfg, SR, length=1)


def test_file_truncated_after_loading_is_caught_at_read_time(root, cfg):
    ds = RecordingDataset(root / "val", cfg, SR)
    path = root / "val" / "rec_000" / "channel_2.wav"
    path.write_bytes(path.read_bytes()[: 44 + 1000])  # header + 500 samples left
    with pytest.raises(DataError, match=r"channel_2\.wav: expected \d+ samples from 0, got 500"):
        ds[0]
