"""Simulation speed: recordings per minute on one core, both schemes, default settings vs baselines.

    .venv/bin/python benchmarks/simulation_speed.py [--recordings 12] [--duration 4.0]

Baselines, measured in the same run: the image-source order left uncapped (pyroomacoustics'
inverse_sabine order; our default caps it at `max_order`), and for the array scheme each
beamformer. Goal: >= 30 recordings/minute for the defaults. Includes writing the WAV files.
"rec/min cpu" counts this process's CPU time (one core, robust to other load on the machine);
"rec/min wall" is elapsed time and drops when other processes compete for the cores.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # one core: set before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from gsenet.simulate import simulate_dataset, summarize_dataset  # noqa: E402

VARIANTS = {
    "paper": {"default": {}, "uncapped order": {"max_order": 1000}},
    "array": {
        "default (mvdr)": {},
        "uncapped order": {"max_order": 1000},
        "ds": {"beamformer": "ds"},
        "superdirective": {"beamformer": "superdirective"},
    },
}


def measure(scheme: str, settings: dict, recordings: int, duration: float, seed: int) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        out = simulate_dataset(Path(tmp) / "d", recordings, seed, scheme, duration, progress=False, **settings)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return recordings / cpu * 60, recordings / wall * 60, summarize_dataset(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=12)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    measure("paper", {}, 1, 0.5, 99)  # warm-up: imports, pyroomacoustics' first call
    print(f"{args.recordings} recordings x {args.duration:.1f} s, 1 process, 1 thread")
    print(
        f"{'scheme':<7} {'variant':<16} {'rec/min cpu':>11} {'wall':>6} {'beam SIR':>9} {'ref SIR':>8} {'SIR gain':>9}"
    )
    for scheme, variants in VARIANTS.items():
        for name, settings in variants.items():
            cpu_rate, wall_rate, summary = measure(scheme, settings, args.recordings, args.duration, args.seed)
            cols = [summary.get(k) for k in ("beam_sir_db", "ref_sir_db", "sir_gain_db")]
            text = " ".join(f"{'-' if c is None else f'{c:.1f}':>8}" for c in cols)
            print(f"{scheme:<7} {name:<16} {cpu_rate:>11.1f} {wall_rate:>6.1f} {text}", flush=True)
    print(json.dumps({"note": "SIR in dB, mean over recordings with interference; gain = beam - ref"}))


if __name__ == "__main__":
    main()
