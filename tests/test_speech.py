import numpy as np
import pytest
import soundfile as sf

from gsenet.errors import DataError
from gsenet.speech import NOISE_KINDS, SourceCorpus, procedural_noise, procedural_speech

FS = 16000


def band_power_db(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / FS)
    return 10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].mean())


def test_procedural_speech_is_deterministic_and_speech_like():
    a = procedural_speech(np.random.default_rng(7), 3 * FS, FS)
    b = procedural_speech(np.random.default_rng(7), 3 * FS, FS)
    c = procedural_speech(np.random.default_rng(8), 3 * FS, FS)
    assert a.dtype == np.float32 and a.shape == (3 * FS,) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Pauses: a good share of 20 ms frames is far below the active level.
    frame_db = 10 * np.log10(np.mean(a[: len(a) // 320 * 320].reshape(-1, 320) ** 2, axis=1) + 1e-12)
    assert np.mean(frame_db < frame_db.max() - 30) > 0.05
    assert np.mean(frame_db > frame_db.max() - 20) > 0.3
    # Speech-like spectrum: most energy below 1 kHz, but fricatives reach high frequencies.
    assert band_power_db(a, 100, 1000) > band_power_db(a, 4000, 7000) + 10
    assert band_power_db(a, 4000, 7000) > band_power_db(a, 7500, 8000)


def test_voiced_frames_are_periodic():
    x = procedural_speech(np.random.default_rng(3), 2 * FS, FS)
    frames = x[: len(x) // 640 * 640].reshape(-1, 640)
    loud = frames[np.argsort(np.sum(frames**2, axis=1))[-5:]]
    for frame in loud:  # normalised autocorrelation peaks at a pitch lag (2.5-12.5 ms)
        ac = np.correlate(frame, frame, "full")[639:]
        assert ac[40:200].max() / ac[0] > 0.5


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_procedural_noise_kinds(kind):
    x = procedural_noise(np.random.default_rng(1), kind, FS, FS)
    assert x.shape == (FS,) and x.dtype == np.float32 and np.all(np.isfinite(x))
    assert abs(np.std(x) - 1) < 1e-3
    np.testing.assert_array_equal(x, procedural_noise(np.random.default_rng(1), kind, FS, FS))


def test_noise_colours_tilt_as_named():
    rng = np.random.default_rng(2)
    tilt = {k: band_power_db(procedural_noise(rng, k, 4 * FS), 100, 500) - band_power_db(procedural_noise(rng, k, 4 * FS), 4000, 8000) for k in ("white", "pink", "brown")}  # fmt: skip
    assert abs(tilt["white"]) < 2
    assert 8 < tilt["pink"] < 20  # ~10 dB per decade
    assert tilt["brown"] > tilt["pink"] + 8
    with pytest.raises(ValueError, match="unknown noise kind"):
        procedural_noise(rng, "rain", 100)


def make_corpus(root, speakers=12, rate=8000):
    """speaker/chapter/file.(wav|flac) like LibriSpeech, short files at another sample rate."""
    rng = np.random.default_rng(0)
    for s in range(speakers):
        folder = root / f"{100 + s}" / "1"
        folder.mkdir(parents=True)
        suffix = "flac" if s % 2 else "wav"
        sf.write(folder / f"{s}-1-0000.{suffix}", 0.1 * rng.standard_normal(int(0.3 * rate)), rate)
    return root


def test_corpus_clips_are_resampled_concatenated_and_speaker_disjoint(tmp_path):
    corpus = SourceCorpus(make_corpus(tmp_path / "speech"))
    assert len(corpus.files) == 12
    speakers = {split: {p.relative_to(corpus.root).parts[0] for p in files} for split, files in corpus.by_split.items()}
    assert not (speakers["train"] & speakers["val"]) and not (speakers["train"] & speakers["test"])
    clip, names = corpus.clip(np.random.default_rng(0), FS, FS, "train")  # 1 s from 0.3 s files
    assert clip.shape == (FS,) and abs(np.std(clip) - 1) < 1e-3
    assert len(names) >= 4  # several files concatenated
    again, names_again = corpus.clip(np.random.default_rng(0), FS, FS, "train")
    np.testing.assert_array_equal(clip, again)
    assert names == names_again


def test_corpus_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        SourceCorpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no .wav or .flac"):
        SourceCorpus(tmp_path / "empty")
