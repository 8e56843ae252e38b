"""`gsenet data check PATH` (lint a dataset) and `gsenet data fetch gs://...` (fill the local cache).

PATH is a local folder or gs://bucket/prefix. `check` prints a summary table (or --json) and exits
1 when the dataset has errors, the same errors that make `gsenet train` refuse it.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    check = sub.add_parser("check", help="validate a dataset and print a summary table")
    check.add_argument("path", help="dataset root (folder with train/ val/ test/) or gs://bucket/prefix")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    check.add_argument("--max-delay-ms", type=float, help="warn above this beam/reference delay (data.max_delay_ms)")
    check.add_argument("--cache-dir", help="local cache for gs:// data (data.cache_dir; default ~/.cache/gsenet)")
    check.add_argument("--no-cache", action="store_true", help="re-read every recording, even unchanged ones")
    _config_arguments(check)
    fetch = sub.add_parser("fetch", help="download gs://bucket/prefix into the local cache and print its path")
    fetch.add_argument("path", help="gs://bucket/prefix")
    fetch.add_argument("--cache-dir", help="local cache (data.cache_dir; default ~/.cache/gsenet)")
    _config_arguments(fetch)  # e.g. data.gcs_timeout_s=5


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment YAML (its data: and model.sample_rate are used)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.beam_channel=channel_3.wav")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        return _check(args)
    if args.data_command == "fetch":
        return _fetch(args)
    print("usage: gsenet data {check,fetch} PATH ...  (see `gsenet data check --help`)")
    return 2


def _check(args: argparse.Namespace) -> int:
    from gsenet.checks import check_dataset
    from gsenet.config import ExperimentConfig, apply_overrides, load_yaml
    from gsenet.storage import resolve_data_root

    cfg = load_yaml(args.config) if args.config else ExperimentConfig()
    overrides = list(args.overrides or [])
    if args.max_delay_ms is not None:
        overrides.append(f"data.max_delay_ms={args.max_delay_ms}")
    if args.cache_dir:
        overrides.append(f"data.cache_dir={args.cache_dir}")
    cfg = apply_overrides(cfg, overrides)
    root = resolve_data_root(args.path, cfg.data.cache_dir, timeout=cfg.data.gcs_timeout_s)
    report = check_dataset(root, cfg.data, cfg.model.sample_rate, use_cache=not args.no_cache)
    if args.path != str(root):
        report.root = f"{args.path} (cached at {root})"
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_table())
    return 0 if report.ok else 1


def _fetch(args: argparse.Namespace) -> int:
    from gsenet.config import ExperimentConfig, apply_overrides, load_yaml
    from gsenet.storage import sync_gcs_prefix

    cfg = apply_overrides(load_yaml(args.config) if args.config else ExperimentConfig(), list(args.overrides or []))
    cache_dir = args.cache_dir or cfg.data.cache_dir
    result = sync_gcs_prefix(args.path, cache_dir, timeout=cfg.data.gcs_timeout_s)
    print(f"{result.objects} objects ({result.downloaded} downloaded now) at {result.path}")
    return 0
