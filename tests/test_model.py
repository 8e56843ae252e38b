"""GSENet's hard requirements: causal, any length, streaming == offline, deterministic size."""

import pytest
import torch

from gsenet.config import ModelConfig
from gsenet.model import CausalSTFT, GSENet, count_parameters, model_summary

SMALL = dict(widths=(4, 8, 8, 8, 16, 16))


def make_model(**overrides) -> GSENet:
    torch.manual_seed(0)
    model = GSENet(ModelConfig(**{**SMALL, **overrides})).eval()
    # The default residual-mask head starts at zero (output == beam, see test_model_output.py):
    # re-draw it, as training would, so these tests exercise the whole network path.
    model.output_conv.conv.reset_parameters()
    return model


@pytest.mark.parametrize("length", [1, 159, 160, 161, 320, 480, 1601, 4000, 4321])
def test_stft_roundtrip_any_length(length):
    stft = CausalSTFT(320, 160)
    x = torch.randn(3, length)
    y = stft.inverse(stft(x), length)
    assert y.shape == x.shape
    assert torch.allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("length", [1, 160, 161, 319, 320, 321, 481, 2000, 16000 + 80])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_length_equals_input_length(length, batch):
    model = make_model()
    with torch.no_grad():
        out = model(torch.randn(batch, length), torch.randn(batch, length))
    assert out.shape == (batch, length)
    assert torch.isfinite(out).all()


def test_long_input_minutes():
    model = make_model()
    length = 16000 * 60 + 123
    with torch.inference_mode():
        out = model(torch.randn(1, length) * 0.1, torch.randn(1, length) * 0.1)
    assert out.shape == (1, length)


def test_mismatched_inputs_raise_with_expected_shape():
    model = make_model()
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        model(torch.randn(1, 1600), torch.randn(1, 1601))
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        model(torch.randn(1600), torch.randn(1600))


def _future_leak(model: GSENet, length: int, t: int) -> float:
    """Max change of outputs before t - window when inputs after t change."""
    torch.manual_seed(1)
    beam, ref = torch.randn(2, length), torch.randn(2, length)
    beam2, ref2 = beam.clone(), ref.clone()
    beam2[:, t:] = torch.randn_like(beam2[:, t:]) * 10
    ref2[:, t:] = torch.randn_like(ref2[:, t:]) * 10
    with torch.no_grad():
        a, b = model(beam, ref), model(beam2, ref2)
    horizon = t - model.cfg.n_fft - model.cfg.lookahead_frames * model.cfg.hop
    assert horizon > 0
    return (a[:, :horizon] - b[:, :horizon]).abs().max().item()


@pytest.mark.parametrize("t", [1000, 1600, 1760, 2345, 3201])  # odd/even frames at the strided level
@pytest.mark.parametrize("time_strides", [(1, 2, 1, 1, 1), (2, 2, 1, 2, 1)])
def test_causal(t, time_strides):
    model = make_model(time_strides=time_strides)
    assert _future_leak(model, 4000, t) <= 1e-6


def test_causal_change_does_propagate_after_horizon():
    """Guard against a vacuous causality test: changes must show up after t."""
    model = make_model()
    torch.manual_seed(1)
    beam, ref = torch.randn(1, 4000), torch.randn(1, 4000)
    beam2 = beam.clone()
    beam2[:, 2000:] += 1.0
    with torch.no_grad():
        diff = (model(beam, ref) - model(beam2, ref)).abs()
    assert diff[:, 2000:].max() > 1e-4


@pytest.mark.parametrize("lookahead", [1, 2])
def test_lookahead_is_bounded(lookahead):
    model = make_model(lookahead_frames=lookahead)
    assert _future_leak(model, 4000, 2400) <= 1e-6


def _stream(model: GSENet, beam: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    hop = model.cfg.hop
    length = beam.shape[1]
    frames = -(-length // hop)
    pad = frames * hop - length
    beam, ref = torch.nn.functional.pad(beam, (0, pad)), torch.nn.functional.pad(ref, (0, pad))
    streamer = model.streamer(batch_size=beam.shape[0])
    chunks = [streamer.step(beam[:, i * hop : (i + 1) * hop], ref[:, i * hop : (i + 1) * hop]) for i in range(frames)]
    assert all(c.shape == (beam.shape[0], hop) for c in chunks)
    out = torch.cat(chunks + [streamer.flush()], dim=1)
    latency = model.latency_samples
    assert out[:, :latency].abs().max() == 0  # leading silence = the algorithmic latency
    return out[:, latency : latency + length]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"time_strides": (2, 2, 1, 2, 1)},
        {"lookahead_frames": 2},
        {"output_mode": "mask", "compress_exponent": 0.5},
        {"inputs": "beam", "decoder_tdb": (True, False, True, False, False), "dilation_depth": 3},
        {"n_fft": 512, "hop": 128},
        {"skip_connection": "add", "decoder_tdb": (True, True, False, False, False)},
    ],
)
def test_streaming_matches_offline_random(overrides):
    model = make_model(**overrides)
    torch.manual_seed(2)
    beam, ref = torch.randn(2, 3333) * 0.3, torch.randn(2, 3333) * 0.3
    with torch.no_grad():
        offline = model(beam, ref)
    assert (_stream(model, beam, ref) - offline).abs().max() < 1e-4


def test_streaming_matches_offline_speechlike():
    """A structured input (harmonics + noise, like simulated recordings) through the default model."""
    torch.manual_seed(3)
    model = GSENet(ModelConfig()).eval()
    model.output_conv.conv.reset_parameters()  # not the identity head of an untrained model
    t = torch.arange(8000) / 16000
    speech = sum(
        torch.sin(2 * torch.pi * f * t * (1 + 0.1 * torch.sin(2 * torch.pi * 3 * t))) / k
        for k, f in enumerate([150, 300, 450], 1)
    )
    beam = (0.3 * speech + 0.01 * torch.randn_like(t))[None]
    ref = (0.3 * speech + 0.1 * torch.randn_like(t))[None]
    with torch.no_grad():
        offline = model(beam, ref)
    assert (_stream(model, beam, ref) - offline).abs().max() < 1e-4


def test_streamer_rejects_wrong_hop():
    streamer = make_model().streamer()
    with pytest.raises(ValueError, match=r"\(1, 160\)"):
        streamer.step(torch.zeros(1, 100), torch.zeros(1, 100))


def test_parameter_count_is_deterministic_and_the_documented_one():
    import re
    from pathlib import Path

    a, b = GSENet(ModelConfig()), GSENet(ModelConfig())
    assert count_parameters(a) == count_parameters(b)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = re.search(r"`gsenet model-info` \(default config\): ([\d,]+) parameters", readme)
    assert documented, "README.md no longer states the default model's parameter count"
    assert count_parameters(a) == int(documented.group(1).replace(",", "")), "update the count in README.md"
    summary = model_summary(ModelConfig())
    assert summary["params"] == count_parameters(a)
    assert sum(row["params"] for row in summary["blocks"]) == summary["params"]
    assert summary["macs_per_s"] > 0


def test_width_multiplier_scales_widths():
    cfg = ModelConfig(width_multiplier=0.5)
    assert cfg.effective_widths == (8, 16, 24, 24, 48, 48)
    assert count_parameters(GSENet(cfg)) < count_parameters(GSENet(ModelConfig())) / 3


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_dilation_depth_changes_tdb(depth):
    model = GSENet(ModelConfig(dilation_depth=depth))
    assert len(model.encoders[4].tdb.convs) == depth if depth else model.encoders[4].tdb is None
    assert [c.conv.dilation[0] for c in model.bottleneck.convs] == [3**k for k in range(1, max(depth, 1) + 1)]


def test_gradients_flow():
    model = make_model()
    model.train()
    out = model(torch.randn(2, 1600), torch.randn(2, 1600))
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bf16_autocast_runs_and_stays_close():
    """GPU training uses bf16 autocast: the complex output and iSTFT must stay in float32."""
    model = make_model()
    beam, ref = torch.randn(2, 3200) * 0.1, torch.randn(2, 3200) * 0.1
    with torch.no_grad():
        full = model(beam, ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(beam, ref)
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert (half - full).abs().max() < 0.05 * full.abs().max() + 1e-3
