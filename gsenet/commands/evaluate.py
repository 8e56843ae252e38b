"""`gsenet evaluate MODEL DATA`: SI-SDR, PESQ-wb and STOI per recording and mean, for the enhanced
output and, as baselines, the beamformer output and the raw reference mic.

MODEL is a checkpoint folder, an exported model folder or an MLflow URI (models:/name@alias, runs:/...).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint folder, model folder, or MLflow model URI")
    parser.add_argument("data", help="dataset root (local or gs://) holding the split")
    parser.add_argument("--split", default="test", help="split folder to score (default: test)")
    parser.add_argument("--csv", default="", help="per-recording CSV (default: evaluation_<split>.csv)")
    parser.add_argument("--streaming", action="store_true", help="enhance through the causal streaming path")
    parser.add_argument("--no-perceptual", action="store_true", help="SI-SDR only (skip the slow PESQ/STOI)")
    parser.add_argument("--max-recordings", type=int, default=0, help="score only the first N recordings")
    parser.add_argument("--mlflow", action="store_true", help="log the results as an MLflow run")
    parser.add_argument("--mlflow-uri", default="", help="tracking URI (models:/ sources and --mlflow)")
    parser.add_argument("--experiment", default="gsenet-evaluation", help="MLflow experiment for --mlflow")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gsenet.config import DataConfig, ExperimentConfig
    from gsenet.inference import evaluate_model, format_table, load_model, summarize, write_csv
    from gsenet.storage import resolve_data_root

    if args.streaming:
        from gsenet.commands.enhance import one_thread_for_streaming

        one_thread_for_streaming()
    model, cfg = load_model(args.model, tracking_uri=args.mlflow_uri)
    data_cfg = cfg.data if isinstance(cfg, ExperimentConfig) else DataConfig()
    root = resolve_data_root(args.data, data_cfg.cache_dir, timeout=data_cfg.gcs_timeout_s)
    rows = evaluate_model(
        model,
        cfg,
        root,
        args.split,
        data_cfg=data_cfg,
        streaming=args.streaming,
        perceptual=not args.no_perceptual,
        max_recordings=args.max_recordings,
    )
    if not rows:
        from gsenet.errors import DataError

        raise DataError(f"{root / args.split}: no recordings to evaluate")
    summary = summarize(rows)
    print(format_table(rows, summary))
    csv_path = write_csv(rows, args.csv or Path(f"evaluation_{args.split}.csv"))
    print(f"per-recording results: {csv_path}")
    if args.mlflow:
        from gsenet import tracking

        uri = tracking.resolve_tracking_uri(args.mlflow_uri)
        run_id = tracking.log_evaluation(
            uri, args.experiment, f"evaluate-{args.split}", summary, csv_path, model=args.model, data=args.data
        )
        print(f"MLflow run {run_id} at {uri}")
    return 0
