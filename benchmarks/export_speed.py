"""Real-time factor of the default GSENet: PyTorch offline, PyTorch streaming, TorchScript, ONNX Runtime.

    python benchmarks/export_speed.py            # default model, 4 s of audio, 1 thread
    python benchmarks/export_speed.py --threads 2 --seconds 10 model.width_multiplier=0.5

RTF = compute seconds / audio seconds (lower is faster; < 1 is faster than real time). Each
exported model is also checked against PyTorch (max abs difference) on the same input.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from model_speed import timed  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from gsenet.config import ExperimentConfig, apply_overrides
from gsenet.inference import check_export, enhance_tensor, export_model
from gsenet.model import GSENet, count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="model.* overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = apply_overrides(ExperimentConfig(), args.overrides).model
    model = GSENet(cfg).eval()
    n = int(args.seconds * cfg.sample_rate)
    x, y = torch.randn(1, n) * 0.1, torch.randn(1, n) * 0.1
    print(f"GSENet {count_parameters(model):,} params, {args.seconds:.0f} s of audio, {args.threads} thread(s)")
    rows = [
        ("pytorch offline", timed(lambda: enhance_tensor(model, x, y), 3) / args.seconds, 0.0),
        ("pytorch streaming", timed(lambda: enhance_tensor(model, x, y, streaming=True), 1) / args.seconds, 0.0),
    ]
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("torchscript", "onnx"):
            path = export_model(model, cfg, Path(folder) / fmt, fmt)
            report = check_export(model, path, seconds=args.seconds, batch=1)
            rows.append((f"{report['runtime']}", report["rtf"], report["max_abs_error"]))
    print(f"{'runtime':<20} {'RTF':>8} {'max |diff|':>12}")
    for name, rtf, err in rows:
        print(f"{name:<20} {rtf:>8.4f} {err:>12.2e}")


if __name__ == "__main__":
    main()
