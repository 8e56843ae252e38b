"""Data loader speed against what one training worker consumes.

    python benchmarks/data_speed.py            # ~1-2 min on 2 cores
    python benchmarks/data_speed.py --quick

Prints, for 2 s segments in batches of 8 from 30 s recordings (16 kHz, PCM_16, files in the page cache):
- loader throughput in seconds of audio per second with DataLoader workers 0/1/2: SegmentDataset
  (seeks to the segment) vs a baseline measured in the same run that loads whole files and cuts the
  segment out (what the published implementation did);
- the same from 48 kHz recordings (resampled once into the cache, then read by seeking);
- the training step's consumption: one step of the default GSENet + loss + AdamW at batch 8 x 2 s
  (2 threads), or the published figure (8.9 s of audio/s at 1024/256) when gsenet.model is missing;
- the linter's speed (`check_dataset`) in hours of audio checked per second.
Goal: loader >= 5x the consumption of one training worker.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.recordings import make_dataset  # noqa: E402

from gsenet.checks import check_dataset  # noqa: E402
from gsenet.config import DataConfig, LossConfig, ModelConfig  # noqa: E402
from gsenet.data import SegmentDataset, collate_batch  # noqa: E402

SR, BATCH, SEGMENT_S = 16000, 8, 2.0
PUBLISHED_TRAIN_SPS = 8.9  # s of audio/s trained by the published implementation (1024/256)


class WholeFileSegments(SegmentDataset):
    """Baseline: same items, but every channel file is read whole and the segment cut out of it."""

    def __getitem__(self, index: int) -> dict:
        recording, offset = self.locate(index)
        item = {}
        for role in ("beam", "ref", "target"):
            samples = sf.read(str(getattr(recording, role)), dtype="float32")[0]
            item[role] = torch.from_numpy(samples[offset : offset + self.segment].copy())
        item.update(length=self.segment, name=recording.name)
        return item


def loader_speed(dataset, workers: int, batches: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers, collate_fn=collate_batch)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    del iterator
    return batches * BATCH * SEGMENT_S / elapsed


def train_consumption(steps: int) -> tuple[float, str]:
    try:
        from gsenet.losses import GSENetLoss
        from gsenet.model import GSENet
    except ImportError:
        return PUBLISHED_TRAIN_SPS, "published figure (gsenet.model missing)"
    torch.set_num_threads(2)
    model, loss_fn = GSENet(ModelConfig()), GSENetLoss(LossConfig())
    optim = torch.optim.AdamW(model.parameters(), 1e-3)
    beam, ref, target = (torch.randn(BATCH, int(SEGMENT_S * SR)) * 0.1 for _ in range(3))
    lengths = torch.full((BATCH,), int(SEGMENT_S * SR), dtype=torch.long)

    def step():
        optim.zero_grad(set_to_none=True)
        loss, _ = loss_fn(model(beam, ref), target, lengths)
        loss.backward()
        optim.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH * SEGMENT_S / (time.perf_counter() - start), "default GSENet, measured (2 threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    batches, steps = (10, 2) if args.quick else (30, 5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = DataConfig(segment_seconds=SEGMENT_S, cache_dir=str(tmp / "cache"))
        root16 = make_dataset(tmp / "d16", n_per_split={"train": 12}, seconds=30.0, splits=("train",))
        root48 = make_dataset(
            tmp / "d48", n_per_split={"train": 12}, seconds=30.0, sample_rate=48000, splits=("train",)
        )
        start = time.perf_counter()
        report = check_dataset(root16, cfg, SR)
        check_hours_per_s = report.summary["splits"]["train"]["hours"] / (time.perf_counter() - start)
        start = time.perf_counter()
        seg48 = SegmentDataset(root48 / "train", cfg, SR, length=10**6)  # resamples into the cache once
        resample_s = time.perf_counter() - start

        consumption, source = train_consumption(steps)
        print(f"training step consumes {consumption:.1f} s of audio/s ({source})")
        print(
            f"linter: {check_hours_per_s * 3600:.0f} s of audio checked per second (6 min of recordings, 5 files each)"
        )
        print(f"48 kHz -> 16 kHz resampling cache built in {resample_s:.1f} s for 6 min of audio (once)\n")
        print(f"{'loader':<34}{'workers':>8}{'audio s/s':>12}{'vs baseline':>13}{'vs training':>13}")
        for workers in (0, 1, 2):
            base = loader_speed(WholeFileSegments(root16 / "train", cfg, SR, length=10**6), workers, batches)
            rows = [
                ("baseline: whole files, 16 kHz", base),
                ("seek segments, 16 kHz", loader_speed(SegmentDataset(root16 / "train", cfg, SR, length=10**6), workers, batches)),
                ("seek segments, 48 kHz (cached)", loader_speed(seg48, workers, batches)),
            ]  # fmt: skip
            for name, speed in rows:
                print(f"{name:<34}{workers:>8}{speed:>12.0f}{speed / base:>12.1f}x{speed / consumption:>12.1f}x")
        print(f"\ngoal: loader >= 5x training consumption ({5 * consumption:.0f} s/s)")


if __name__ == "__main__":
    main()
