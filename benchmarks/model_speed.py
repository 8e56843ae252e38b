"""Model speed, side by side with the published GSE-Network implementation in the same process.

    python benchmarks/model_speed.py --reference /tmp/gse-ref   # ~15-25 min on a loaded 2-core box
    python benchmarks/model_speed.py                            # gsenet's own figures only
    python benchmarks/model_speed.py --reference /tmp/gse-ref --rounds 3 --only train

`--reference` is a checkout of https://github.com/SausageMuffins/GSE-Network (MIT); its `model.py`,
`layers.py` and `losses.py` are imported from there, never copied here. Figures:
- training step (forward + each implementation's own loss + backward + AdamW), batch 8 x 2 s, 2
  threads, fp32 and bf16 autocast: the published model (1024/256), gsenet at 1024/256 and at its
  default 320/160; achieved conv+matmul GFLOP/s (torch's FlopCounterMode over one step) against
  the 2-thread fp32 matmul peak measured between rounds;
- offline inference real-time factor, 10 s of audio, 1 thread, fp32 and bf16 autocast;
- streaming real-time factor of gsenet at 320/160, one hop at a time, 1 thread.
Contenders run in interleaved rounds (one call each per round) so that load from other processes
hits them alike; a ratio is the median of the per-round ratios, with their range. CPU time
(process_time) is printed beside wall time: on a shared machine it is the steadier one.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from gsenet.config import LossConfig, ModelConfig
from gsenet.losses import GSENetLoss
from gsenet.model import GSENet, model_summary
from gsenet.runtime import reuse_freed_memory
from gsenet.throughput import matmul_peak_flops

BATCH, TRAIN_SECONDS, INFER_SECONDS, SAMPLE_RATE = 8, 2.0, 10.0, 16000
PUBLISHED = "published 1024/256"


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Best wall time of `repeats` calls after `warmup` (export_speed.py's single-contender timer)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def module_at_commit(rev: str, path: str, name: str):
    """The repository's file `path` as of commit `rev` (git show), imported as module `name`, so an
    earlier version runs side by side with this checkout's in one process."""
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit(
            f"--baseline {rev}: git show failed ({err.stderr.strip()}); pass a commit of this repo"
        ) from None
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and annotations look their module up
    spec.loader.exec_module(module)
    return module


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int, between=None) -> dict[str, list]:
    """(cpu s, wall s) of one call of each contender per round, after one warm-up call each; the
    order is reversed every other round, so neither contender always runs first."""
    for fn in contenders.values():
        fn()
    samples: dict[str, list] = {name: [] for name in contenders}
    for round_index in range(rounds):
        order = list(contenders.items())
        for name, fn in order[::-1] if round_index % 2 else order:
            cpu, wall = time.process_time(), time.perf_counter()
            fn()
            samples[name].append((time.process_time() - cpu, time.perf_counter() - wall))
        if between is not None:
            between()
    return samples


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def round_ratios(slow: list, fast: list, which: int) -> list[float]:
    return [a[which] / b[which] for a, b in zip(slow, fast, strict=True)]


# ----------------------------------------------------------------------------------------------
# The published implementation, imported from its checkout
# ----------------------------------------------------------------------------------------------
def load_reference(path: str):
    """(model class, loss class) from a GSE-Network checkout; its model.py does `from layers import`."""
    root = Path(path)
    missing = [name for name in ("model.py", "layers.py", "losses.py") if not (root / name).is_file()]
    if missing:
        raise SystemExit(
            f"--reference {root}: no {', '.join(missing)} there; pass a checkout of "
            "https://github.com/SausageMuffins/GSE-Network (e.g. git archive HEAD into /tmp/gse-ref)"
        )

    def load(name: str, alias: str):
        spec = importlib.util.spec_from_file_location(alias, root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[alias] = module
        spec.loader.exec_module(module)
        return module

    saved = sys.modules.get("layers")
    load("layers", "layers")  # under the name its model.py imports
    model_module, loss_module = load("model", "gse_reference_model"), load("losses", "gse_reference_losses")
    if saved is not None:
        sys.modules["layers"] = saved
    return model_module.GSENet, loss_module.GSENetSTFTLoss


class PublishedAdapter(torch.nn.Module):
    """The published model behind gsenet's (beam, ref) call order; its own forward is (ref, beam)."""

    def __init__(self, model_class):
        super().__init__()
        self.net = model_class()

    def forward(self, beam: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.net(ref, beam)


_GSENET_LOSS = GSENetLoss(LossConfig())


def gsenet_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _GSENET_LOSS(estimate, target)[0]


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def train_step(model: torch.nn.Module, loss_fn, bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    beam, ref, target = (torch.randn(BATCH, int(TRAIN_SECONDS * SAMPLE_RATE)) * 0.1 for _ in range(3))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            estimate = model(beam, ref)
        estimate = estimate.float()
        loss_fn(estimate, target[:, : estimate.shape[1]]).backward()
        optimizer.step()

    return step


def step_flops(step: Callable[[], None]) -> int:
    """Convolution + matmul FLOPs of one training step, counted by torch (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def training_models(reference) -> dict[str, tuple[torch.nn.Module, Callable]]:
    torch.manual_seed(0)
    models = {}
    if reference is not None:
        model_class, loss_class = reference
        loss = loss_class()
        models[PUBLISHED] = (PublishedAdapter(model_class), lambda e, t: loss(e, t))
    models["gsenet 1024/256"] = (GSENet(ModelConfig(n_fft=1024, hop=256)), gsenet_loss)
    models["gsenet 320/160"] = (GSENet(ModelConfig()), gsenet_loss)
    return models


def bench_training(reference, rounds: int, precisions=("fp32", "bf16")) -> None:
    torch.set_num_threads(2)
    audio = BATCH * TRAIN_SECONDS
    peaks: list[float] = []
    for precision in precisions:
        steps = {
            name: train_step(m, loss, precision == "bf16") for name, (m, loss) in training_models(reference).items()
        }
        flops = {name: step_flops(step) for name, step in steps.items()} if precision == "fp32" else {}
        peaks.append(matmul_peak_flops())
        samples = interleaved(steps, rounds, between=lambda: peaks.append(matmul_peak_flops()))
        print(f"\n## training, {precision}, batch {BATCH} x {TRAIN_SECONDS:g} s, 2 threads, {rounds} rounds")
        header = f"{'model':<20} {'CPU s/step':>22} {'wall s/step':>22} {'s audio/wall s':>15}"
        print(header + ("  vs published: CPU, wall" if reference else ""))
        for name, runs in samples.items():
            cpu, wall = [c for c, _ in runs], [w for _, w in runs]
            line = f"{name:<20} {spread(cpu):>22} {spread(wall):>22} {audio / statistics.median(wall):>15.2f}"
            if reference and name != PUBLISHED:
                line += f"  {spread(round_ratios(samples[PUBLISHED], runs, 0))}x, "
                line += f"{spread(round_ratios(samples[PUBLISHED], runs, 1))}x"
            print(line)
        for name, count in flops.items():
            wall = statistics.median(w for _, w in samples[name])
            achieved = count / wall
            print(
                f"  {name:<18} {count / 1e9:7.1f} GFLOP/step, {achieved / 1e9:6.1f} GFLOP/s = "
                f"{100 * achieved / max(peaks):.0f}% of the 2-thread fp32 matmul peak ({max(peaks) / 1e9:.0f} GFLOP/s)"
            )


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------
def bench_offline(reference, rounds: int, precisions=("fp32", "bf16")) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    models = {name: model.eval() for name, (model, _) in training_models(reference).items()}
    beam, ref = (torch.randn(1, int(INFER_SECONDS * SAMPLE_RATE)) * 0.1 for _ in range(2))
    for precision in precisions:

        def enhance(model, bf16=precision == "bf16"):
            def call():
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    model(beam, ref)

            return call

        samples = interleaved({name: enhance(m) for name, m in models.items()}, rounds)
        print(f"\n## offline inference, {precision}, {INFER_SECONDS:g} s of audio, 1 thread, {rounds} rounds")
        print(
            f"{'model':<20} {'RTF (CPU)':>22} {'RTF (wall)':>22}"
            + ("  speed-up vs published: CPU, wall" if reference else "")
        )
        for name, runs in samples.items():
            cpu, wall = [c / INFER_SECONDS for c, _ in runs], [w / INFER_SECONDS for _, w in runs]
            line = f"{name:<20} {spread(cpu):>22} {spread(wall):>22}"
            if reference and name != PUBLISHED:
                line += f"  {spread(round_ratios(samples[PUBLISHED], runs, 0))}x, "
                line += f"{spread(round_ratios(samples[PUBLISHED], runs, 1))}x"
            print(line)


def bench_streaming(rounds: int, seconds: float = 3.0) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = ModelConfig()
    model = GSENet(cfg).eval()
    hops = int(seconds * cfg.sample_rate) // cfg.hop
    beam, ref = torch.randn(hops, 1, cfg.hop) * 0.1, torch.randn(hops, 1, cfg.hop) * 0.1

    def stream():
        streamer = model.streamer()
        for i in range(hops):
            streamer.step(beam[i], ref[i])

    runs = interleaved({"stream": stream}, rounds)["stream"]
    audio = hops * cfg.hop / cfg.sample_rate
    cpu, wall = [c / audio for c, _ in runs], [w / audio for _, w in runs]
    print(f"\n## streaming gsenet 320/160, one {1000 * cfg.hop / cfg.sample_rate:.0f} ms hop at a time, 1 thread")
    print(f"RTF (CPU) {spread(cpu)}, RTF (wall) {spread(wall)}; the published model has no streaming mode")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="checkout of the published GSE-Network repository")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison")
    parser.add_argument("--only", choices=("train", "offline", "stream"), help="run one section")
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"),
        help="training and offline precisions (bf16 is emulated, and slow, on CPUs without AVX-512 BF16/AMX)",
    )  # fmt: skip
    parser.add_argument(
        "--allocator", choices=("gsenet", "glibc"), default="gsenet",
        help="gsenet: what `gsenet train` workers run with (gsenet.runtime.reuse_freed_memory), for every "
        "contender; glibc: the C library's defaults (what the published implementation's own process has)",
    )  # fmt: skip
    args = parser.parse_args()
    reference = load_reference(args.reference) if args.reference else None
    applied = args.allocator == "gsenet" and reuse_freed_memory()
    print(f"torch {torch.__version__}; {torch.get_num_threads()} threads available; allocator: "
          + ("gsenet (freed memory reused, no mmap per block)" if applied else "glibc defaults"))  # fmt: skip
    if reference is None:
        print("no --reference: comparison with the published implementation skipped (gsenet's own figures only)")
    for name, cfg in (("gsenet 1024/256", ModelConfig(n_fft=1024, hop=256)), ("gsenet 320/160", ModelConfig())):
        summary = model_summary(cfg)
        print(f"{name}: {summary['params']:,} params, {summary['macs_per_s'] / 1e9:.2f} GMAC per s of audio")
    if reference is not None:
        print(f"{PUBLISHED}: {sum(p.numel() for p in PublishedAdapter(reference[0]).parameters()):,} params")
    if args.only in (None, "train"):
        bench_training(reference, args.rounds, args.precisions)
    if args.only in (None, "offline"):
        bench_offline(reference, args.rounds, args.precisions)
    if args.only in (None, "stream"):
        bench_streaming(args.rounds)


if __name__ == "__main__":
    main()
