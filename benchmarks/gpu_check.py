"""GPU check, one command (< 8 min on one H100): `python benchmarks/gpu_check.py [--out gpu_check.json]`.

Part 1 needs only torch, numpy and pyyaml (run it from a checkout with PYTHONPATH=.): the real
training step of gsenet/train.py (`train_step`, the function the workers run) on CUDA with
synthetic batches, in fp32, bf16 autocast + TF32, and bf16 + torch.compile; seconds of audio per
second and % of the card's dense bf16 peak; offline and streaming real-time factors on the GPU;
and the bf16 model's output against fp32 (SI-SDR of one against the other, >= 30 dB required).

Part 2 (where Ray, MLflow and Optuna are installed): a 2-epoch `gsenet train --gpus-per-worker 1`
and a 4-trial smoke sweep on GPU workers, on simulated data.

Prints a table and writes JSON. On a machine without CUDA it says "no CUDA device" and exits 0.
`--device cpu` runs part 1 on the CPU instead (without torch.compile), a dry run of the very code
the GPU runs: tests/test_gpu_check.py does that with a tiny model (`--set model.widths=...`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by a substring of the name.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "L40": 362.0}
BF16_AGREEMENT_DB = 30.0  # bf16 output vs fp32 output, SI-SDR in dB
WARMUP_STEPS = 3
TRAINING_MODES = ("fp32", "bf16", "bf16+compile")  # bf16 = autocast + TF32 for what stays fp32


def synthetic_batch(batch: int, seconds: float, sample_rate: int, device) -> dict:
    generator = torch.Generator().manual_seed(0)
    length = int(seconds * sample_rate)
    target = torch.randn(batch, length, generator=generator) * 0.1
    beam = target + 0.05 * torch.randn(batch, length, generator=generator)
    ref = target + 0.1 * torch.randn(batch, length, generator=generator)
    lengths = torch.full((batch,), length)
    return {"beam": beam.to(device), "ref": ref.to(device), "target": target.to(device), "lengths": lengths}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(cfg, mode: str, batch: dict, steps: int, device: torch.device) -> dict:
    """Seconds of audio trained per second with gsenet.train.train_step in `mode`."""
    from gsenet import train
    from gsenet.losses import GSENetLoss
    from gsenet.model import GSENet
    from gsenet.throughput import training_flops_per_audio_second

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode != "fp32"
    torch.manual_seed(0)
    model = GSENet(cfg.model).to(device).train()
    forward = torch.compile(model) if mode == "bf16+compile" else model
    dtype = None if mode == "fp32" else torch.bfloat16
    loss_fn = GSENetLoss(cfg.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        train.train_step(forward, model.parameters(), loss_fn, optimizer, batch, device, dtype, 1.0)

    for _ in range(WARMUP_STEPS):  # warm-up (and compilation)
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    audio = batch["beam"].shape[0] * batch["beam"].shape[1] / cfg.model.sample_rate
    rate = audio / seconds
    return {"audio_s_per_s": rate, "tflops": rate * training_flops_per_audio_second(cfg.model) / 1e12}


@torch.inference_mode()
def inference_checks(cfg, device: torch.device, seconds: float = 10.0, streaming_seconds: float = 2.0) -> dict:
    """Offline RTF (fp32, bf16), streaming RTF, and bf16-vs-fp32 agreement on `device`."""
    from gsenet.metrics import si_sdr
    from gsenet.model import GSENet

    torch.manual_seed(0)
    model = GSENet(cfg.model).to(device).eval()
    x = synthetic_batch(1, seconds, cfg.model.sample_rate, device)
    beam, ref = x["beam"], x["ref"]
    out = {}
    outputs = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            model(beam, ref)  # warm-up
            synchronize(device)
            start = time.perf_counter()
            outputs[name] = model(beam, ref).float()
            synchronize(device)
        out[f"offline_rtf_{name}"] = (time.perf_counter() - start) / seconds
    a, b = (outputs[k][0].cpu().numpy() for k in ("bf16", "fp32"))
    out["bf16_vs_fp32_si_sdr_db"] = si_sdr(a, b)
    hop, hops = cfg.model.hop, int(streaming_seconds * cfg.model.sample_rate) // cfg.model.hop
    streamer = model.streamer(batch_size=1)
    for i in range(5):  # warm-up
        streamer.step(beam[:, i * hop : (i + 1) * hop], ref[:, i * hop : (i + 1) * hop])
    synchronize(device)
    start = time.perf_counter()
    for i in range(5, 5 + hops):
        streamer.step(beam[:, i * hop : (i + 1) * hop], ref[:, i * hop : (i + 1) * hop])
    synchronize(device)
    out["streaming_rtf"] = (time.perf_counter() - start) / (hops * hop / cfg.model.sample_rate)
    return out


def parse_overrides(pairs: list[str]) -> dict:
    """--set KEY=VALUE (YAML values), as `gsenet train` takes them."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE, e.g. model.width_multiplier=0.5")
        out[key] = yaml.safe_load(value)
    return out


def part1(args, device: torch.device) -> dict:
    import platform

    from gsenet.config import ExperimentConfig, apply_overrides

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), math.nan) if device.type == "cuda" else math.nan
    results = {"device": name, "torch": torch.__version__, "bf16_peak_tflops": peak, "training": {}}
    overrides = parse_overrides(args.set)
    modes = TRAINING_MODES if device.type == "cuda" else [m for m in TRAINING_MODES if "compile" not in m]
    for stft in ("320/160", "1024/256"):
        n_fft, hop = (int(v) for v in stft.split("/"))
        cfg = apply_overrides(ExperimentConfig(), {**overrides, "model.n_fft": n_fft, "model.hop": hop})
        batch = synthetic_batch(args.batch, args.seconds, cfg.model.sample_rate, device)
        for mode in modes:
            try:
                figures = time_training(cfg, mode, batch, args.steps, device)
                figures["peak_fraction"] = figures["tflops"] / peak
            except Exception as exc:  # e.g. torch.compile without a compiler toolchain
                figures = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            results["training"][f"{stft} {mode}"] = figures
    cfg = apply_overrides(ExperimentConfig(), overrides)
    results["inference"] = inference_checks(cfg, device, args.inference_seconds, args.streaming_seconds)
    return results


def part2(args) -> dict:
    """Real `gsenet train` and `gsenet search` on GPU workers (needs Ray, MLflow, Optuna)."""
    if not all(importlib.util.find_spec(m) for m in ("ray", "mlflow", "optuna")):
        return {"skipped": "Ray, MLflow or Optuna is not installed here"}
    gsenet = [sys.executable, "-m", "gsenet"]
    with tempfile.TemporaryDirectory(prefix="gsenet-gpu-") as folder:
        work = Path(folder)
        out = {}
        commands = {
            "simulate": gsenet + ["simulate", str(work / "data"), "--recordings", "12", "--seed", "0"],
            "train": gsenet
            + ["train", "--data", str(work / "data"), "--gpus-per-worker", "1", "train.epochs=2"]
            + ["train.steps_per_epoch=20", f"tracking.mlflow_uri=sqlite:///{work / 'mlruns.db'}"],
            "search": gsenet
            + ["search", "--smoke-test", "--data", str(work / "data"), "--num-samples", "4", "--gpus-per-worker", "1"]
            + ["--mlflow-uri", f"sqlite:///{work / 'mlruns.db'}", "--storage-path", str(work / "runs")],
        }
        for name, command in commands.items():
            start = time.perf_counter()
            done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=240)
            out[name] = {"ok": done.returncode == 0, "seconds": round(time.perf_counter() - start, 1)}
            if done.returncode != 0:
                out[name]["tail"] = (done.stdout + done.stderr)[-1500:]
                break
        return out


def print_table(results: dict) -> None:
    print(f"\n{results['device']} (torch {results['torch']}), dense bf16 peak {results['bf16_peak_tflops']} TFLOP/s")
    print(f"{'training step (batch x seconds)':<34}{'audio s/s':>12}{'TFLOP/s':>10}{'% peak':>8}")
    for key, figures in results["training"].items():
        if "error" in figures:
            print(f"{key:<34}  failed: {figures['error'][:80]}")
            continue
        print(
            f"{key:<34}{figures['audio_s_per_s']:>12.0f}{figures['tflops']:>10.2f}{100 * figures['peak_fraction']:>7.1f}%"
        )
    inference = results["inference"]
    for key, value in inference.items():
        print(f"{key:<34}{value:>12.4f}")
    ok = inference["bf16_vs_fp32_si_sdr_db"] >= BF16_AGREEMENT_DB
    print(f"bf16 output vs fp32: {'ok' if ok else 'TOO FAR'} (>= {BF16_AGREEMENT_DB} dB SI-SDR required)")
    print(f"part 2: {json.dumps(results.get('part2', {}))[:500]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check.json", help="JSON results file")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of audio per example")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per mode")
    parser.add_argument("--inference-seconds", type=float, default=10.0, help="audio for the offline RTF")
    parser.add_argument("--streaming-seconds", type=float, default=2.0, help="audio for the streaming RTF")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (part 1)")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu: a dry run of part 1")
    parser.add_argument("--skip-part2", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (run this on a GPU machine)")
        return 0
    results = part1(args, device)
    skip = "--skip-part2" if args.skip_part2 else ("GPU only" if device.type != "cuda" else "")
    results["part2"] = {"skipped": skip} if skip else part2(args)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nresults: {args.out}")
    return 0 if results["inference"]["bf16_vs_fp32_si_sdr_db"] >= BF16_AGREEMENT_DB else 1


if __name__ == "__main__":
    sys.exit(main())
