"""Streaming speed (one 10 ms hop at a time), this checkout against an earlier commit's gsenet/model.py, in one process.

    python benchmarks/stream_speed.py                      # uncommitted edits against HEAD, ~2-4 min
    python benchmarks/stream_speed.py --baseline 9ecf39b --rounds 12 --seconds 3

The baseline's `gsenet/model.py` is read with `git show REV:gsenet/model.py` and imported as a
module of its own; both models get the same weights (default config, 1 thread) and stream the same
audio hop by hop. The first line checks that both streams are identical. Interleaved rounds (the
order alternates); RTF = CPU seconds per second of audio; ratios baseline / this checkout (> 1:
faster now), median and range.
"""

from __future__ import annotations

import argparse

import torch
from model_speed import interleaved, module_at_commit, round_ratios, spread

from gsenet.config import ModelConfig
from gsenet.model import GSENet

BASELINE = "HEAD"  # the last commit: an edit of gsenet/model.py is measured before it is committed


def stream(model, beam: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    streamer, hop = model.streamer(), model.cfg.hop
    hops = [streamer.step(beam[:, i : i + hop], ref[:, i : i + hop]) for i in range(0, beam.shape[1] - hop + 1, hop)]
    return torch.cat([*hops, streamer.flush()], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="commit whose gsenet/model.py is the baseline")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="audio streamed per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = ModelConfig()
    current = GSENet(cfg).eval()
    current.output_conv.conv.reset_parameters()  # an untrained residual-mask head is zero: output == beam
    baseline = module_at_commit(args.baseline, "gsenet/model.py", "baseline_model").GSENet(cfg).eval()
    baseline.load_state_dict(current.state_dict(), strict=True)
    generator = torch.Generator().manual_seed(0)
    beam, ref = (0.1 * torch.randn(1, int(args.seconds * cfg.sample_rate), generator=generator) for _ in range(2))
    difference = (stream(current, beam, ref) - stream(baseline, beam, ref)).abs().max().item()
    print(f"baseline {args.baseline}: max |difference| of the two streams {difference:.3g}")
    samples = interleaved(
        {"baseline": lambda: stream(baseline, beam, ref), "current": lambda: stream(current, beam, ref)},
        args.rounds,
    )
    rtf = {name: [cpu / args.seconds for cpu, _ in values] for name, values in samples.items()}
    print(f"RTF (CPU) baseline {spread(rtf['baseline'])}, this checkout {spread(rtf['current'])}")
    ratios = round_ratios(samples["baseline"], samples["current"], 0)
    print(f"speed-up (baseline / this checkout, CPU time): {spread(ratios)}, {args.rounds} rounds")


if __name__ == "__main__":
    main()
