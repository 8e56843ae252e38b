"""The output head: the default residual mask starts as the identity (output == beam at step 0),
learns from the first step, and streams exactly like the offline model once trained."""

import pytest
import torch

from gsenet.config import ModelConfig
from gsenet.inference import enhance_tensor
from gsenet.model import GSENet

SMALL = dict(widths=(4, 8, 8, 8, 16, 16))


def untrained(**overrides) -> GSENet:
    torch.manual_seed(0)
    return GSENet(ModelConfig(**{**SMALL, **overrides})).eval()


def perturbed_head(model: GSENet, scale: float = 0.05) -> GSENet:
    """As after some training: a non-zero output conv, so the network path is really exercised."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.output_conv.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return model


def test_default_is_the_residual_mask():
    assert ModelConfig().output_mode == "residual_mask"


@pytest.mark.parametrize("inputs", ["beam+ref", "beam", "ref"])
@pytest.mark.parametrize("length", [161, 4000, 16000])
def test_untrained_default_model_outputs_its_beam_input(inputs, length):
    model = untrained(inputs=inputs, compress_exponent=0.5)
    torch.manual_seed(2)
    beam, ref = torch.randn(2, length) * 0.1, torch.randn(2, length) * 0.1
    with torch.no_grad():
        out = model(beam, ref)
    assert (out - beam).abs().max().item() <= 1e-5 * max(1.0, beam.abs().max().item())


def test_untrained_streaming_equals_offline_equals_beam():
    model = untrained()
    torch.manual_seed(3)
    beam, ref = torch.randn(1, 3210) * 0.1, torch.randn(1, 3210) * 0.1
    offline = enhance_tensor(model, beam, ref)
    streamed = enhance_tensor(model, beam, ref, streaming=True)
    assert (streamed - offline).abs().max().item() <= 1e-5
    assert (offline - beam).abs().max().item() <= 1e-5


@pytest.mark.parametrize("output_mode", ["residual_mask", "mask", "mapping"])
def test_trained_head_streaming_equals_offline(output_mode):
    model = perturbed_head(untrained(output_mode=output_mode, compress_exponent=0.5))
    torch.manual_seed(4)
    beam, ref = torch.randn(2, 4321) * 0.1, torch.randn(2, 4321) * 0.1
    offline = enhance_tensor(model, beam, ref)
    streamed = enhance_tensor(model, beam, ref, streaming=True)
    assert (offline - beam).abs().max().item() > 1e-3  # not the identity any more
    assert (streamed - offline).abs().max().item() <= 1e-5


def test_the_whole_network_learns_from_the_first_steps():
    """The zero output conv gets a gradient at step 0; after one update every layer gets one."""
    model = untrained().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(5)
    beam, ref, target = torch.randn(3, 2, 3200) * 0.1
    for step in range(2):
        optimizer.zero_grad()
        (model(beam, ref) - target).pow(2).mean().backward()
        head = model.output_conv.conv.weight.grad.abs().sum().item()
        first = model.input_conv.conv.weight.grad.abs().sum().item()
        assert head > 0
        assert (first > 0) == (step > 0)  # nothing flows through a zero head, then everything does
        optimizer.step()


@pytest.mark.parametrize("output_mode", ["residual_mask", "mask"])
def test_scale_output_multiplies_the_output_exactly(output_mode):
    """scale_output (the level fix for models trained with scale-invariant losses) is exact,
    offline and streaming, against the unscaled model's output times the gain."""
    from gsenet.model import scale_output

    model = perturbed_head(untrained(output_mode=output_mode, compress_exponent=0.5))
    torch.manual_seed(5)
    beam, ref = torch.randn(2, 3333) * 0.1, torch.randn(2, 3333) * 0.1
    before = enhance_tensor(model, beam, ref)
    scale_output(model, 0.1)
    after, streamed = enhance_tensor(model, beam, ref), enhance_tensor(model, beam, ref, streaming=True)
    tolerance = 1e-5 * before.abs().max().item()
    assert (after - 0.1 * before).abs().max().item() <= tolerance
    assert (streamed - 0.1 * before).abs().max().item() <= tolerance


def test_scale_output_refuses_a_mapping_head():
    from gsenet.model import scale_output

    with pytest.raises(ValueError, match="mask output"):
        scale_output(untrained(output_mode="mapping"), 0.5)


def test_calibrate_output_level_brings_the_median_level_to_the_targets():
    """`gsenet train` re-levels the models it logs: after calibration the median over recordings of
    rms(output) / rms(target), computed here in NumPy, is 0 dB, whatever the level before."""
    import numpy as np

    from gsenet.enhance import calibrate_output_level, enhance_arrays

    model = perturbed_head(untrained(compress_exponent=0.5))
    rng = np.random.default_rng(3)
    items = [
        {"beam": rng.standard_normal(4000) * 0.1, "ref": rng.standard_normal(4000) * 0.1,
         "target": rng.standard_normal(4000) * scale}
        for scale in (0.001, 0.003, 0.002)
    ]  # fmt: skip

    def median_level_db() -> float:
        levels = [
            20 * np.log10(np.std(enhance_arrays(model, it["beam"], it["ref"])) / np.std(it["target"])) for it in items
        ]
        return float(np.median(levels))

    before = median_level_db()
    gain_db = calibrate_output_level(model, items)
    assert before > 20  # the outputs were far louder than these quiet targets
    assert gain_db == pytest.approx(-before, abs=0.5)
    assert abs(median_level_db()) < 0.05
    assert calibrate_output_level(untrained(output_mode="mapping"), items) == 0.0  # cannot be rescaled: left alone
