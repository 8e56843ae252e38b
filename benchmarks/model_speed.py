"""Model speed: training throughput, offline and streaming real-time factors, size and MACs.

    python benchmarks/model_speed.py            # full run (~3-5 min on 2 cores)
    python benchmarks/model_speed.py --quick    # fewer repeats

Prints, for the default config (320/160) and the same widths at 1024/256:
- training throughput: seconds of audio trained per second (batch 8 x 2 s, 2 threads, fwd+bwd+AdamW),
  plain fp32 vs channels_last vs bf16 autocast (AMX CPUs) vs torch.compile;
- offline inference RTF on one thread (10 s of audio), eager vs inference_mode vs bf16 autocast vs
  torch.compile;
- streaming RTF on one thread (one hop at a time through GSENetStreamer);
- params and MACs per second of audio.
Ratios are against the plain configuration measured in the same process, and against the figures
the published implementation measured on this kind of machine at 1024/256 (8.9 s/s trained,
offline RTF 0.072 on one thread).
"""

from __future__ import annotations

import argparse
import time

import torch

from gsenet.config import LossConfig, ModelConfig
from gsenet.losses import GSENetLoss
from gsenet.model import GSENet, model_summary

PUBLISHED_TRAIN_SPS = 8.9  # s of audio trained per second, published implementation, 1024/256
PUBLISHED_OFFLINE_RTF = 0.072  # one thread, published implementation, 1024/256


def timed(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def train_throughput(cfg: ModelConfig, variant: str, steps: int) -> float:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = GSENet(cfg)
    loss_fn = GSENetLoss(LossConfig(), cfg.sample_rate)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model, dynamic=False) if variant == "compile" else model
    # bf16 autocast: AMX/AVX512-BF16 CPUs run mkldnn convs in bf16 (the trainer's train.precision=bf16)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16")
    optim = torch.optim.AdamW(model.parameters(), 1e-3)
    batch, seconds = 8, 2.0
    beam, ref, target = (torch.randn(batch, int(seconds * cfg.sample_rate)) * 0.1 for _ in range(3))

    def one_step():
        optim.zero_grad(set_to_none=True)
        with autocast:
            estimate = step_model(beam, ref)
        loss, _ = loss_fn(estimate.float(), target)
        loss.backward()
        optim.step()

    one_step()  # warm-up (and compilation)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    return batch * seconds * steps / (time.perf_counter() - start)


def offline_rtf(cfg: ModelConfig, variant: str, repeats: int) -> float:
    torch.set_num_threads(1)
    model = GSENet(cfg).eval()
    seconds = 10
    beam, ref = (torch.randn(1, seconds * cfg.sample_rate) * 0.1 for _ in range(2))
    if variant == "no_grad":
        with torch.no_grad():
            return timed(lambda: model(beam, ref), repeats) / seconds
    run_model = torch.compile(model, dynamic=False) if variant == "compile" else model
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16"):
        return timed(lambda: run_model(beam, ref), repeats, warmup=2 if variant == "compile" else 1) / seconds


def streaming_rtf(cfg: ModelConfig, seconds: float) -> float:
    torch.set_num_threads(1)
    model = GSENet(cfg).eval()
    hops = int(seconds * cfg.sample_rate) // cfg.hop
    beam, ref = torch.randn(hops, 1, cfg.hop) * 0.1, torch.randn(hops, 1, cfg.hop) * 0.1
    streamer = model.streamer()
    for i in range(10):  # warm-up
        streamer.step(beam[i], ref[i])
    streamer = model.streamer()
    start = time.perf_counter()
    for i in range(hops):
        streamer.step(beam[i], ref[i])
    return (time.perf_counter() - start) / (hops * cfg.hop / cfg.sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile variants")
    args = parser.parse_args()
    steps, repeats, stream_s = (2, 2, 3.0) if args.quick else (5, 3, 10.0)
    train_variants = ["fp32", "channels_last", "bf16"] + ([] if args.no_compile else ["compile"])
    infer_variants = ["no_grad", "inference_mode", "bf16"] + ([] if args.no_compile else ["compile"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available")
    configs = [
        ("default 320/160", ModelConfig()),
        ("1024/256", ModelConfig(n_fft=1024, hop=256)),
        ("1024/256, skip_connection=add", ModelConfig(n_fft=1024, hop=256, skip_connection="add")),
    ]
    for name, cfg in configs:
        summary = model_summary(cfg)
        print(f"\n== {name}: {summary['params']:,} params, {summary['macs_per_s'] / 1e9:.2f} GMAC/s of audio")
        base = None
        for variant in train_variants:
            try:
                sps = train_throughput(cfg, variant, steps)
            except Exception as exc:  # torch.compile can fail on some builds: report, keep going
                print(f"train  {variant:<15} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
                continue
            base = base or sps
            vs_pub = f", {sps / PUBLISHED_TRAIN_SPS:.2f}x published" if cfg.n_fft == 1024 else ""
            print(f"train  {variant:<15} {sps:7.1f} s audio/s (2 threads)  {sps / base:.2f}x fp32{vs_pub}")
        base = None
        for variant in infer_variants:
            try:
                rtf = offline_rtf(cfg, variant, repeats)
            except Exception as exc:
                print(f"offline {variant:<14} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
                continue
            base = base or rtf
            vs_pub = f", {PUBLISHED_OFFLINE_RTF / rtf:.2f}x faster than published" if cfg.n_fft == 1024 else ""
            print(f"offline {variant:<14} RTF {rtf:.4f} (1 thread)  {base / rtf:.2f}x no_grad{vs_pub}")
        rtf = streaming_rtf(cfg, stream_s)
        print(f"stream  one hop at a time  RTF {rtf:.4f} (1 thread, {1000 * cfg.hop / cfg.sample_rate:.0f} ms hops)")


if __name__ == "__main__":
    main()
