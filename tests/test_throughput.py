"""The MFU figures `gsenet train` logs, against independent counts."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gsenet.config import ModelConfig
from gsenet.model import GSENet
from gsenet.throughput import matmul_peak_flops, training_flops_per_audio_second, worker_threads

SMALL = dict(widths=(4, 8, 8, 8, 16, 16))


@pytest.mark.parametrize("overrides", [{}, {"n_fft": 512, "hop": 128, "skip_connection": "add"}])
def test_training_flops_match_torch_flop_counter(overrides):
    """torch's own counter over a real forward + backward: 3x forward, less the input conv's unneeded
    input gradient (so the 6 x MACs estimate may be a little above, never below by more than rounding)."""
    cfg = ModelConfig(**SMALL, **overrides)
    seconds = 4  # model_summary's length, so the frames past the end weigh the same
    model = GSENet(cfg)
    x = torch.randn(1, seconds * cfg.sample_rate) * 0.1
    with FlopCounterMode(display=False) as counter:
        model(x, x).pow(2).mean().backward()
    counted = counter.get_total_flops() / seconds
    estimate = training_flops_per_audio_second(cfg)
    assert 0.9 * estimate < counted <= estimate * 1.0001


@pytest.mark.parametrize("cpus,threads", [(0.5, 1), (1, 1), (2, 2), (3.9, 3), (16, 16)])
def test_worker_threads_one_per_whole_cpu(cpus, threads):
    assert worker_threads(cpus) == threads


def test_matmul_peak_is_a_plausible_flop_rate():
    """Against a plain timing of one larger matmul: the peak is the best case, so not far below it."""
    import time

    peak = matmul_peak_flops(size=256, seconds=0.05)
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    a @ b
    start = time.perf_counter()
    a @ b
    plain = 2 * 512**3 / (time.perf_counter() - start)
    assert peak > 0 and peak > plain / 20  # a loaded CI box: only order of magnitude


def _train_args(*argv: str):
    import argparse

    from gsenet.commands import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_local_gsenet_train_uses_all_cpus_unless_told(tmp_path):
    from gsenet.commands.train import build_config, cpus_per_worker_given, share_local_cpus

    assert not cpus_per_worker_given(_train_args("--data", "d"))
    assert cpus_per_worker_given(_train_args("--cpus-per-worker", "3"))
    assert cpus_per_worker_given(_train_args("train.cpus_per_worker=2"))
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  cpus_per_worker: 2\n")
    assert cpus_per_worker_given(_train_args("--config", str(config)))
    config.write_text("train:\n  epochs: 2\n")
    assert not cpus_per_worker_given(_train_args("--config", str(config)))
    cfg = build_config(_train_args("--workers", "2"))
    assert share_local_cpus(cfg, 8.0).train.cpus_per_worker == 4
    assert share_local_cpus(cfg, 1.0).train.cpus_per_worker == 1
