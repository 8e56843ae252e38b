"""Training-step speed, this checkout against an earlier commit's gsenet/model.py, in one process.

    python benchmarks/train_step_speed.py                         # uncommitted edits against HEAD
    python benchmarks/train_step_speed.py --baseline 8389dcd --rounds 8 --sizes 1024/256 --precisions fp32
    python benchmarks/train_step_speed.py --projection-ops     # the strided 1x1 conv alone, both ways

The baseline's `gsenet/model.py` is read with `git show REV:gsenet/model.py` and imported as a
module of its own; both models get the same weights. The first lines check that their outputs and
gradients agree (float rounding only) before anything is timed. Then interleaved rounds (the order
reversed every other round) of one training step each (model_speed.py's: forward + gsenet's loss + backward + AdamW,
batch 8 x 2 s, 2 threads by default); ratios baseline / this checkout of CPU and wall time (> 1: faster now),
median and range.
"""

from __future__ import annotations

import argparse
import time

import torch
from model_speed import gsenet_loss, interleaved, module_at_commit, round_ratios, spread, train_step

from gsenet.config import ModelConfig
from gsenet.model import GSENet
from gsenet.runtime import reuse_freed_memory


def agreement(current, baseline, cfg: ModelConfig) -> tuple[float, float]:
    """Max |output difference| and max |gradient difference| relative to the gradient's scale."""
    generator = torch.Generator().manual_seed(1)
    beam, ref, target = (0.1 * torch.randn(2, cfg.sample_rate // 2, generator=generator) for _ in range(3))
    outputs, grads = [], []
    for model in (current, baseline):
        model.zero_grad(set_to_none=True)
        out = model(beam, ref)
        gsenet_loss(out, target).backward()
        outputs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    scale = grads[1].abs().max().clamp_min(1e-30)
    return (outputs[0] - outputs[1]).abs().max().item(), ((grads[0] - grads[1]).abs().max() / scale).item()


def projection_ops(repeats: int = 5) -> None:
    """Forward + backward of an encoder's strided 1x1 projection (1024/256 shapes, batch 8): as one
    strided conv, and as gsenet.model.CausalConv2d runs it (subsample, then an unstrided conv)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    for cin, cout, frames, bins in [(16, 32, 128, 513), (32, 48, 128, 257), (48, 96, 64, 129)]:
        x = torch.randn(8, cin, frames, bins, requires_grad=True)
        w = torch.randn(cout, cin, 1, 1, requires_grad=True)
        ways = {
            "strided conv": lambda x=x, w=w: F.conv2d(x, w, stride=2),
            "subsample + conv": lambda x=x, w=w: F.conv2d(x[:, :, ::2, ::2], w),
        }
        grad = torch.randn_like(ways["strided conv"]())
        best = {}
        for name, fn in ways.items():
            times = []
            for _ in range(repeats):
                start = time.process_time()
                fn().backward(grad)
                times.append(time.process_time() - start)
                x.grad = w.grad = None
            best[name] = min(times)
        print(
            f"{cin}->{cout} channels, {frames} x {bins}: strided {1e3 * best['strided conv']:.0f} ms, "
            f"subsample + conv {1e3 * best['subsample + conv']:.0f} ms (CPU, best of {repeats})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="commit whose gsenet/model.py is the baseline")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--sizes", nargs="*", default=["1024/256", "320/160"], help="n_fft/hop pairs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1: no OpenMP spin-waits under load)")
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    parser.add_argument("--projection-ops", action="store_true", help="time the strided 1x1 projection alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as `gsenet train` workers run (both contenders share the process)
    if args.projection_ops:
        return projection_ops()
    baseline_module = module_at_commit(args.baseline, "gsenet/model.py", "baseline_model")
    for size in args.sizes:
        n_fft, hop = (int(v) for v in size.split("/"))
        cfg = ModelConfig(n_fft=n_fft, hop=hop)
        torch.manual_seed(0)
        current = GSENet(cfg)
        baseline = baseline_module.GSENet(cfg)
        baseline.load_state_dict(current.state_dict(), strict=True)
        out_diff, grad_diff = agreement(current, baseline, cfg)
        print(
            f"\n## {size}: max |output difference| {out_diff:.2g}, max gradient difference {grad_diff:.2g} (relative)"
        )
        for precision in args.precisions:
            bf16 = precision == "bf16"
            steps = {
                "baseline": train_step(baseline, gsenet_loss, bf16),
                "current": train_step(current, gsenet_loss, bf16),
            }
            samples = interleaved(steps, args.rounds)
            cpu = round_ratios(samples["baseline"], samples["current"], 0)
            wall = round_ratios(samples["baseline"], samples["current"], 1)
            base_cpu = spread([c for c, _ in samples["baseline"]])
            now_cpu = spread([c for c, _ in samples["current"]])
            print(
                f"{precision}: CPU s/step baseline {base_cpu}, this checkout {now_cpu}; "
                f"speed-up CPU {spread(cpu)}x, wall {spread(wall)}x ({args.rounds} rounds)"
            )


if __name__ == "__main__":
    main()
