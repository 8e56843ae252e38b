"""`gsenet model-info [--config FILE] [key=value ...]`: size, per-block breakdown, MACs, latency."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment YAML (its model: section is used)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.width_multiplier=0.5")


def run(args: argparse.Namespace) -> int:
    from gsenet.config import ExperimentConfig, apply_overrides, load_yaml
    from gsenet.model import model_summary

    cfg = load_yaml(args.config) if args.config else ExperimentConfig()
    cfg = apply_overrides(cfg, args.overrides or [])
    summary = model_summary(cfg.model)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    m = cfg.model
    print(f"GSENet  inputs={m.inputs}  n_fft={m.n_fft} hop={m.hop} @ {m.sample_rate} Hz  widths={summary['widths']}")
    print(f"dilation depth {m.dilation_depth}  time strides {list(m.time_strides)}  output {m.output_mode}")
    print(f"{'block':<12} {'params':>10} {'MMAC/s':>10}")
    for row in summary["blocks"]:
        print(f"{row['block']:<12} {row['params']:>10,} {row['macs_per_s'] / 1e6:>10.1f}")
    print(f"{'total':<12} {summary['params']:>10,} {summary['macs_per_s'] / 1e6:>10.1f}")
    print(
        f"algorithmic latency {summary['latency_ms']:.1f} ms; {summary['macs_per_s'] / 1e9:.2f} GMAC per second of audio"
    )
    return 0
