"""How fast training runs, as nanoGPT reports MFU: achieved FLOP/s against a measured matmul peak.

    threads = worker_threads(cfg.train.cpus_per_worker)   # torch.set_num_threads(threads)
    flops = training_flops_per_audio_second(cfg.model)     # conv FLOPs, forward + backward
    peak = matmul_peak_flops(device, dtype)                # best of a few square matmuls
    fraction = audio_seconds_per_second * flops / peak

Only convolutions count (they are ~all of GSENet's arithmetic); the backward pass is counted as
twice the forward (input and weight gradients), the usual 3x-forward rule.
"""

from __future__ import annotations

import math
import time

import torch

from gsenet.config import ModelConfig


def worker_threads(cpus: float) -> int:
    """Threads for a worker given `cpus` CPUs: one per whole CPU, at least one (Ray does the same
    for OMP_NUM_THREADS, but only when the variable is unset: an inherited OMP_NUM_THREADS=1 would
    otherwise leave a 4-CPU worker on one thread)."""
    return max(1, math.floor(cpus))


def training_flops_per_audio_second(cfg: ModelConfig) -> float:
    """Forward + backward convolution FLOPs per second of audio trained: 3 x 2 x forward MACs."""
    from gsenet.model import model_summary

    return 6.0 * model_summary(cfg)["macs_per_s"]


def matmul_peak_flops(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, size: int = 1024, seconds: float = 0.3
) -> float:
    """Best FLOP/s of `size` x `size` matmuls in `dtype` on the current thread count, over ~`seconds`."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):  # warm-up: thread pool, kernel selection
        a @ b
    sync()
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == math.inf:
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best
