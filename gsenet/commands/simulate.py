"""`gsenet simulate OUT --recordings N --seed S [--scheme paper|array]`: a simulated dataset."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (made if missing); gets train/ val/ test/ and simulation.json")
    parser.add_argument("--recordings", type=int, default=40, help="number of recordings (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="recording i depends only on (seed, i) (default 0)")
    parser.add_argument(
        "--scheme",
        choices=("paper", "array"),
        default="paper",
        help="paper: the guided training scheme (y0 with attenuated interference vs raw y1); "
        "array: a classical beamformer on a simulated mic array (default paper)",
    )
    parser.add_argument(
        "--target",
        choices=("direct", "early"),
        default="direct",
        help="ground truth: the direct path (the model must also dereverberate) or early = direct + "
        "reflections within 50 ms, as in the DNS Challenge (default direct)",
    )
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per recording (default 4.0)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    parser.add_argument(
        "--speech-dir", default="", help="WAV/FLAC speech corpus, read recursively (default: procedural)"
    )
    parser.add_argument("--noise-dir", default="", help="WAV/FLAC noise corpus, read recursively (default: procedural)")
    parser.add_argument("--beamformer", choices=("ds", "mvdr", "superdirective"), help="array scheme (default mvdr)")
    parser.add_argument("--max-interferers", type=int, help="array scheme: 0..K interfering talkers (default 2)")
    parser.add_argument("--float", action="store_true", help="write 32-bit float WAV instead of 16-bit PCM")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset made with other settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any SimulationConfig field, e.g. --set rt60_s=[0.2,0.8] --set interference_prob=0.6",
    )


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import time

    from gsenet.config import ConfigError, from_dict, parse_value
    from gsenet.simulate import SimulationConfig, simulate_dataset, summarize_dataset

    fields = {f.name for f in dataclasses.fields(SimulationConfig)}
    settings = {}
    for item in args.settings:
        key, sep, text = item.partition("=")
        if not sep or key.strip() not in fields:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        settings[key.strip()] = parse_value(text)
    if args.beamformer:
        settings["beamformer"] = args.beamformer
    settings.setdefault("target", args.target)
    if args.max_interferers is not None:
        settings["max_interferers"] = args.max_interferers
    if args.float:
        settings["subtype"] = "FLOAT"
    config = from_dict(settings, SimulationConfig)  # typed and validated: errors name the key

    start = time.monotonic()
    out = simulate_dataset(
        args.out,
        args.recordings,
        args.seed,
        args.scheme,
        args.duration,
        args.sample_rate,
        speech_dir=args.speech_dir,
        noise_dir=args.noise_dir,
        config=config,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    elapsed = time.monotonic() - start
    summary = summarize_dataset(out)
    print(json.dumps(summary))
    print(f"wrote {summary['recordings']} recordings to {out} in {elapsed:.1f} s")
    return 0
