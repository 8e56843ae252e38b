"""The training loss's cost, this checkout against an earlier commit's gsenet/losses.py, in one process.

    python benchmarks/loss_speed.py                      # ~3-6 min on a loaded 2-core box
    python benchmarks/loss_speed.py --baseline ab4d0e0 --rounds 15

The baseline's `gsenet/losses.py` is read with `git show REV:gsenet/losses.py` and imported as a
module of its own, so both losses run side by side on the same tensors. Figures (batch 8 x 2 s, 2
threads, default LossConfig): forward + backward of the loss alone, and a whole training step
(model forward + loss + backward + AdamW, benchmarks/model_speed.py's step) with each loss, at
gsenet's default 320/160 and at 1024/256. Interleaved rounds; ratios of CPU time per round
(baseline / this checkout: > 1 means faster now), median and range; the first line checks that
both losses give the same value and gradient on these inputs.
"""

from __future__ import annotations

import argparse
import sys

import torch
from model_speed import (
    BATCH,
    SAMPLE_RATE,
    TRAIN_SECONDS,
    interleaved,
    module_at_commit,
    round_ratios,
    spread,
    train_step,
)

from gsenet.config import LossConfig, ModelConfig
from gsenet.losses import GSENetLoss
from gsenet.model import GSENet

BASELINE = "ab4d0e0"  # main before the loss shared its spectra and wrote out its backward


def loss_alone(loss: torch.nn.Module, estimate: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor):
    def call() -> None:
        estimate.grad = None
        loss(estimate, target, lengths)[0].backward()

    return call


def report(title: str, samples: dict[str, list]) -> None:
    (base_name, base), (new_name, new) = samples.items()
    print(f"\n## {title}")
    for name, runs in samples.items():
        print(f"{name:<10} CPU s {spread([c for c, _ in runs]):>24}   wall s {spread([w for _, w in runs]):>24}")
    print(
        f"speed-up {base_name} / {new_name}: CPU {spread(round_ratios(base, new, 0))}x, wall {spread(round_ratios(base, new, 1))}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="commit whose gsenet/losses.py is the baseline")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds per comparison")
    parser.add_argument("--no-step", action="store_true", help="the loss alone only, no training steps")
    args = parser.parse_args()
    torch.set_num_threads(2)
    baseline = module_at_commit(args.baseline, "gsenet/losses.py", "baseline_losses")
    losses = {"baseline": baseline.GSENetLoss(LossConfig()), "now": GSENetLoss(LossConfig())}

    torch.manual_seed(0)
    time = int(TRAIN_SECONDS * SAMPLE_RATE)
    target = torch.randn(BATCH, time) * 0.1
    estimate = (target + 0.1 * torch.randn(BATCH, time)).requires_grad_()
    lengths = torch.tensor([time] * (BATCH - 2) + [time * 3 // 4, time // 3])  # ragged, as a last batch
    values, grads = {}, {}
    for name, loss in losses.items():
        estimate.grad = None
        values[name] = loss(estimate, target, lengths)[0]
        values[name].backward()
        grads[name] = estimate.grad.clone()
    grad_error = float((grads["now"] - grads["baseline"]).abs().max() / grads["baseline"].abs().max())
    value_error = float(abs(values["now"] - values["baseline"]).detach() / abs(values["baseline"]).detach())
    print(
        f"baseline {args.baseline}: relative difference of the loss {value_error:.1e}, of its gradient {grad_error:.1e}"
    )

    calls = {name: loss_alone(loss, estimate, target, lengths) for name, loss in losses.items()}
    report(
        f"loss forward + backward, batch {BATCH} x {TRAIN_SECONDS:g} s, 2 threads, {args.rounds} rounds",
        interleaved(calls, args.rounds),
    )
    if args.no_step:
        return
    for label, cfg in (("320/160 (default)", ModelConfig()), ("1024/256", ModelConfig(n_fft=1024, hop=256))):
        torch.manual_seed(0)
        model = GSENet(cfg)
        steps = {
            name: train_step(model, lambda e, t, loss=loss: loss(e, t)[0], bf16=False) for name, loss in losses.items()
        }
        report(
            f"training step fp32 at {label}, batch {BATCH} x {TRAIN_SECONDS:g} s, 2 threads, {args.rounds} rounds",
            interleaved(steps, args.rounds),
        )
    print(
        f"\n(baseline = gsenet/losses.py at {args.baseline}; now = this checkout; python {sys.version.split()[0]}, torch {torch.__version__})"
    )


if __name__ == "__main__":
    main()
