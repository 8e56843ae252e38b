"""The `gsenet` command line.

Each subcommand lives in `gsenet/commands/<name>.py` with two functions:
`add_arguments(parser)` and `run(args) -> int`. Command modules import heavy libraries (torch,
Ray, MLflow) inside `run`, so `gsenet --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module under gsenet.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "model-info": ("model_info", "parameters, per-block breakdown and MACs of a model config"),
    "simulate": ("simulate", "make a simulated multi-microphone dataset"),
    "data": ("data", "dataset tools: `gsenet data check PATH`, `data align SRC DST`, `data fetch gs://...`"),
    "train": ("train", "train one model on Ray Train, tracked in MLflow"),
    "evaluate": ("evaluate", "score a trained model against the beamformer and the reference mic"),
    "enhance": ("enhance", "enhance recordings or WAV files with a trained model"),
    "export": ("export", "export a trained model as a self-contained folder (onnx | torchscript)"),
    "search": ("search", "hyperparameter sweep (Ray Tune + Optuna + ASHA)"),
    "ui": ("ui", "start the MLflow UI on 127.0.0.1 for the local tracking store"),
    "cluster": ("cluster", "a GCP Ray cluster: render | up | down | status | submit | ui (over Ray's CLI)"),
    "doctor": ("doctor", "check versions, CPU/GPU, Ray, MLflow, GCS and disk before training"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gsenet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(f"gsenet.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gsenet.commands.{module_name}":
                raise
            continue  # command not built yet
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like parse_args, but `key=value` overrides may come anywhere on the line, also after options
    (`gsenet train a=1 --mlflow-uri U b=2`); argparse alone stops the positional list at an option."""
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if extra and (stray or not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    from gsenet.errors import GSENetError

    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except GSENetError as exc:
        # Expected failures (bad data, bad config, unreachable services) get one clear line.
        print(f"gsenet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gsenet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
