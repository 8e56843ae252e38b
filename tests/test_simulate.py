import json

import numpy as np
import pytest
import soundfile as sf

from gsenet.cli import main
from gsenet.errors import DataError, GSENetError
from gsenet.simulate import Sources, load_simulation_config, simulate_dataset, simulate_recording, split_counts

FS = 16000
SHORT = {"duration_s": 1.0, "rt60_s": (0.15, 0.3)}  # small and fast; defaults otherwise


@pytest.fixture(scope="module")
def paper_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    return simulate_dataset(out, 5, seed=3, scheme="paper", progress=False, interference_prob=0.6, **SHORT)


@pytest.fixture(scope="module")
def array_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("array")
    return simulate_dataset(out, 4, seed=3, scheme="array", progress=False, max_interferers=1, **SHORT)


def metas(root):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("*/*/meta.json"))}


def components(root, meta):
    """Re-simulate a recording (a function of seed and index only) to get its separate parts."""
    cfg, seed = load_simulation_config(root)
    return simulate_recording(meta["index"], meta["split"], seed, cfg, Sources(cfg))


@pytest.mark.parametrize(
    ("n", "expected"), [(1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)), (10, (8, 1, 1)), (40, (32, 4, 4))]
)
def test_split_counts(n, expected):
    assert split_counts(n) == expected


@pytest.mark.parametrize("dataset", ["paper_dataset", "array_dataset"])
def test_layout_and_format(dataset, request):
    root = request.getfixturevalue(dataset)
    manifest = json.loads((root / "simulation.json").read_text())
    assert sum(len(v) for v in manifest["splits"].values()) == manifest["recordings"]
    n_channels = 2 if "paper" in dataset else 4  # array: beamformer + 3 raw mics
    for split in ("train", "val", "test"):
        recordings = sorted((root / split).iterdir())
        assert [r.name for r in recordings] == manifest["splits"][split] and recordings
        for rec in recordings:
            names = sorted(p.name for p in rec.iterdir())
            expected = sorted(
                [f"channel_{k}.wav" for k in range(1, n_channels + 1)] + ["ground_truth.wav", "meta.json"]
            )
            assert names == expected
            infos = [sf.info(str(rec / n)) for n in expected if n.endswith(".wav")]
            assert {(i.samplerate, i.channels, i.frames, i.subtype) for i in infos} == {(FS, 1, FS, "PCM_16")}
            ref, _ = sf.read(str(rec / "channel_2.wav"))
            peak = max(np.abs(sf.read(str(rec / n))[0]).max() for n in expected if n.endswith(".wav"))
            assert peak <= 0.9 + 1e-3  # one scale for all channels, no clipping
            assert -45 < 10 * np.log10(np.mean(ref**2)) <= -27.5  # reference near -28 dBFS


def test_passes_the_data_checks(paper_dataset, array_dataset):
    from gsenet import checks
    from gsenet.config import DataConfig

    for root in (paper_dataset, array_dataset):
        report = checks.check_dataset(root, DataConfig(), FS)
        assert report.ok, report.format_table()


def test_same_seed_same_files_whatever_n_and_workers(tmp_path, paper_dataset):
    other = simulate_dataset(tmp_path / "again", 3, seed=3, scheme="paper", workers=2, progress=False, interference_prob=0.6, **SHORT)  # fmt: skip
    for name in ("channel_1.wav", "channel_2.wav", "ground_truth.wav"):
        a = (paper_dataset / "train" / "sim00000" / name).read_bytes()
        assert a == (other / "train" / "sim00000" / name).read_bytes()
    different = simulate_dataset(tmp_path / "seed4", 1, seed=4, scheme="paper", progress=False, **SHORT)
    a, _ = sf.read(str(paper_dataset / "train" / "sim00000" / "channel_1.wav"))
    b, _ = sf.read(str(different / "train" / "sim00000" / "channel_1.wav"))
    assert not np.allclose(a, b)


def test_paper_scheme_contrast_follows_the_drawn_gains(paper_dataset):
    with_interference = 0
    for name, meta in metas(paper_dataset).items():
        sim = components(paper_dataset, meta)
        wav, _ = sf.read(str(paper_dataset / meta["split"] / name / "channel_1.wav"))
        np.testing.assert_allclose(sim.channels[0], wav, atol=2e-4)  # the file is the sum of the parts
        beam, ref = meta["channels"]["channel_1.wav"], meta["channels"]["channel_2.wav"]
        if meta["n_interferers"]:
            with_interference += 1
            # y1 carries beta dB more interference (up to the two receivers' RIR differences).
            assert beam["sir_db"] - ref["sir_db"] == pytest.approx(meta["gains_db"]["beta"], abs=1.5)
            assert beam["sir_db"] > ref["sir_db"] + 2
        assert beam["snr_db"] == pytest.approx(-meta["gains_db"]["g_n"], abs=0.5)
    assert with_interference >= 1


def test_array_beamformer_raises_sir(array_dataset):
    found = 0
    for name, meta in metas(array_dataset).items():
        sim = components(array_dataset, meta)
        for k in (1, 2):  # the files are the sums of the re-simulated parts
            wav, _ = sf.read(str(array_dataset / meta["split"] / name / f"channel_{k}.wav"))
            np.testing.assert_allclose(sim.channels[k - 1], wav, atol=2e-4)
        sir = [10 * np.log10(np.sum(s**2) / np.sum(i**2)) for s, i in zip(sim.speech[:2], sim.interference[:2], strict=True) if np.any(i)]  # fmt: skip
        if meta["n_interferers"]:
            found += 1
            assert sir[0] > sir[1] + 3  # beamformer (channel_1) vs raw reference (channel_2)
            assert meta["channels"]["channel_1.wav"]["sir_db"] == pytest.approx(sir[0], abs=0.05)
            assert meta["sources"]["interferers"][0]["separation_deg"] >= 30
        assert meta["room"]["rt60_s"] > 0 and "azimuth_deg" in meta["sources"]["speech"]
    assert found >= 1


def test_target_is_aligned_with_the_reference(array_dataset):
    meta = metas(array_dataset)["sim00000"]
    sim = components(array_dataset, meta)
    for channel in (sim.speech[1], sim.speech[0]):  # raw reference mic, beamformer output
        xc = np.correlate(channel, sim.target, "full")
        assert abs(int(np.argmax(xc)) - (len(sim.target) - 1)) <= 1


def test_resume_and_refusals(tmp_path):
    out = simulate_dataset(tmp_path / "d", 3, seed=0, progress=False, duration_s=0.5)
    stamp = (out / "train" / "sim00000" / "meta.json").stat().st_mtime_ns
    (out / "test" / "sim00002" / "meta.json").unlink()  # an unfinished recording
    simulate_dataset(out, 3, seed=0, progress=False, duration_s=0.5)
    assert (out / "train" / "sim00000" / "meta.json").stat().st_mtime_ns == stamp  # kept
    assert (out / "test" / "sim00002" / "meta.json").is_file()  # finished
    with pytest.raises(DataError, match="--overwrite"):
        simulate_dataset(out, 3, seed=1, progress=False, duration_s=0.5)
    simulate_dataset(out, 4, seed=1, progress=False, duration_s=0.5, overwrite=True)
    assert json.loads((out / "simulation.json").read_text())["seed"] == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not a simulated dataset"):
        simulate_dataset(tmp_path / "other", 3, seed=0, progress=False)
    with pytest.raises(GSENetError, match="scheme"):
        simulate_dataset(tmp_path / "bad", 3, seed=0, scheme="nope")


def test_speech_corpus_and_cli(tmp_path, capsys):
    speech = tmp_path / "speech" / "200" / "1"
    speech.mkdir(parents=True)
    sf.write(speech / "a.flac", 0.1 * np.random.default_rng(0).standard_normal(8000), 8000)
    code = main(["simulate", str(tmp_path / "out"), "--recordings", "1", "--duration", "0.5", "--quiet",
                 "--scheme", "array", "--speech-dir", str(tmp_path / "speech"), "--float", "--set", "n_mics=4"])  # fmt: skip
    assert code == 0
    rec = tmp_path / "out" / "train" / "sim00000"
    meta = json.loads((rec / "meta.json").read_text())
    assert meta["sources"]["speech"]["name"].startswith("200/1/a.flac@")
    assert sf.info(str(rec / "channel_5.wav")).subtype == "FLOAT"
    assert "wrote 1 recordings" in capsys.readouterr().out
    assert main(["simulate", str(tmp_path / "bad"), "--set", "rt60_s=0.3", "--quiet"]) == 1
    assert "rt60_s" in capsys.readouterr().err


def gcc_phat_delay(x: np.ndarray, y: np.ndarray, max_lag: int = 20, upsample: int = 16) -> float:
    """Delay of x relative to y in samples (positive: x lags), by GCC-PHAT with sub-sample peak."""
    n = 1 << (len(x) + len(y)).bit_length()
    cross = np.fft.rfft(x, n) * np.conj(np.fft.rfft(y, n))
    cross /= np.abs(cross) + 1e-12
    cc = np.fft.irfft(cross, n * upsample)  # zero-padded spectrum: correlation upsampled
    lags = np.concatenate([cc[-max_lag * upsample :], cc[: max_lag * upsample + 1]])
    return (int(np.argmax(lags)) - max_lag * upsample) / upsample


def test_paper_target_is_aligned_with_the_guide(paper_dataset):
    """The target must be sample-aligned with y0's speech (the guide the model is trained to clean),
    as the array scheme's target is with the beamformer's: the receivers are up to ~3 samples apart."""
    offsets_y0, offsets_y1 = [], []
    for meta in metas(paper_dataset).values():
        sim = components(paper_dataset, meta)
        offsets_y0.append(gcc_phat_delay(sim.speech[0], sim.target))
        offsets_y1.append(gcc_phat_delay(sim.speech[1], sim.target))
        assert meta["target"]["kind"] == "direct"
    assert max(abs(d) for d in offsets_y0) <= 0.2, offsets_y0  # reflections bias GCC-PHAT a little
    # Guard against a vacuous check: the other receiver really is offset in some recordings.
    assert max(abs(d) for d in offsets_y1) >= 0.5, offsets_y1


def test_early_target_keeps_50_ms_of_reflections(tmp_path):
    kwargs = dict(progress=False, duration_s=1.0, rt60_s=(0.4, 0.45), split_fractions=(1.0, 0.0, 0.0))
    direct = simulate_dataset(tmp_path / "direct", 1, seed=5, **kwargs)
    early = simulate_dataset(tmp_path / "early", 1, seed=5, target="early", **kwargs)
    sims = [components(root, meta) for root in (direct, early) for meta in metas(root).values()]
    np.testing.assert_allclose(sims[0].channels[0], sims[1].channels[0])  # only the target differs
    assert abs(gcc_phat_delay(sims[1].target, sims[0].target)) <= 0.1
    reverberant = sims[1].speech[0]

    def residual_db(target):  # how much of the reverberant speech the target does not explain
        gain = np.dot(reverberant, target) / np.dot(target, target)
        return 10 * np.log10(np.sum((reverberant - gain * target) ** 2) / np.sum(reverberant**2))

    assert residual_db(sims[1].target) < residual_db(sims[0].target) - 3  # early explains far more
    assert json.loads((early / "train" / "sim00000" / "meta.json").read_text())["target"]["early_ms"] == 50.0
