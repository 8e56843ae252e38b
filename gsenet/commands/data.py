"""`gsenet data check PATH` (lint a dataset), `gsenet data align SRC DST` (fix a beamformer offset)
and `gsenet data fetch gs://...` (fill the local cache).

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
    align = sub.add_parser(
        "align", help="write a copy of a dataset with the beamformer aligned to the reference mic (GCC-PHAT)"
    )
    align.add_argument("src", help="dataset root (folder with train/ val/ test/)")
    align.add_argument("dst", help="new folder for the aligned copy (must not exist)")
    align.add_argument(
        "--tolerance-ms",
        type=float,
        help="refuse a recording whose delay varies more (data.align_tolerance_ms, default 2)",
    )
    align.add_argument("--dry-run", action="store_true", help="measure and report, write nothing")
    _config_arguments(align)
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
    if args.data_command == "align":
        return _align(args)
    print("usage: gsenet data {check,align,fetch} PATH ...  (see `gsenet data check --help`)")
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


def _align(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gsenet.align import align_dataset, plan_dataset
    from gsenet.config import ExperimentConfig, apply_overrides, load_yaml
    from gsenet.errors import DataError
    from gsenet.progress import tracked

    cfg = apply_overrides(load_yaml(args.config) if args.config else ExperimentConfig(), list(args.overrides or []))
    src, dst = Path(args.src), Path(args.dst)
    if dst.exists():
        raise DataError(f"{dst} already exists; pick a new folder (the aligned copy never overwrites)")
    if args.tolerance_ms is not None:
        cfg.data.align_tolerance_ms = args.tolerance_ms
    plans = plan_dataset(src, cfg.data, cfg.data.align_tolerance_ms)
    for plan in plans:
        print(plan.describe())
    refused = [p.recording for p in plans if p.problem]
    if refused:
        raise DataError(
            f"{len(refused)} of {len(plans)} recording(s) cannot be aligned ({', '.join(refused[:10])}); "
            f"nothing was written. Fix or remove them in {src}, or raise --tolerance-ms"
        )
    shifted = sum(1 for p in plans if p.delay_samples)
    if args.dry_run:
        print(f"dry run: {shifted} of {len(plans)} recordings would be shifted; nothing written")
        return 0
    align_dataset(src, dst, cfg.data, plans, progress=lambda items: tracked(items, "align", unit="rec"))
    print(f"wrote {dst}: {len(plans)} recordings, {shifted} shifted; check it with `gsenet data check {dst}`")
    return 0
