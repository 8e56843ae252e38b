"""Data that would blow up training is caught by `gsenet data check` first (fast: no Ray)."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from fixtures.recordings import make_dataset

from gsenet.checks import MAX_ABS_SAMPLE, check_dataset
from gsenet.config import DataConfig


def test_a_float_wav_with_an_absurd_sample_is_an_error_naming_the_file(tmp_path):
    root = make_dataset(tmp_path / "ds", n_per_split=1, seconds=1.0, seed=1)
    path = root / "train" / "rec_000" / "channel_2.wav"
    samples, sr = sf.read(str(path), dtype="float32")
    samples[1234] = 1e30  # finite, so no NaN/Inf check sees it; its square overflows float32
    sf.write(str(path), samples, sr, subtype="FLOAT")
    loud = root / "val" / "rec_000" / "channel_2.wav"  # a loud but sane float file stays fine
    samples, sr = sf.read(str(loud), dtype="float32")
    sf.write(str(loud), samples * 0.9 * MAX_ABS_SAMPLE / np.abs(samples).max() / 100, sr, subtype="FLOAT")

    report = check_dataset(root, DataConfig(), 16000, use_cache=False)
    errors = [e for e in report.errors if "absurd amplitude" in e]
    assert len(errors) == 1 and str(path) in errors[0] and "1e+30" in errors[0]
    assert not any(str(loud) in e for e in report.errors)
    assert report.bad_recordings == ["train/rec_000"]
