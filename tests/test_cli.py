"""The command line itself: argument parsing and the checks that run before Ray starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.mlflow_server import free_port
from fixtures.recordings import make_dataset

from gsenet.cli import build_parser, parse_args

REPO = Path(__file__).resolve().parents[1]


def test_overrides_are_accepted_anywhere_on_the_line():
    args = parse_args(
        build_parser(), ["train", "a.x=1", "--mlflow-uri", "http://h:1", "b.y=2", "--workers", "2", "c.z=3"]
    )
    assert args.overrides == ["a.x=1", "b.y=2", "c.z=3"]
    assert args.mlflow_uri == "http://h:1" and args.workers == 2
    args = parse_args(build_parser(), ["data", "check", "root", "data.x=1", "--json", "data.y=2"])
    assert (args.path, args.overrides, args.json) == ("root", ["data.x=1", "data.y=2"], True)


@pytest.mark.parametrize(
    "argv",
    [["train", "a.x=1", "--no-such-flag"], ["ui", "x=1"]],
)
def test_unknown_arguments_are_still_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(build_parser(), argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_relative_data_and_storage_paths_become_absolute(tmp_path, monkeypatch):
    from gsenet.commands.train import build_config
    from gsenet.preflight import absolute_local_paths

    monkeypatch.chdir(tmp_path)
    args = parse_args(build_parser(), ["train", "--data", "data", "--storage", "runs", "data.cache_dir=cache"])
    cfg = absolute_local_paths(build_config(args))
    assert cfg.data.path == str(tmp_path / "data")
    assert cfg.train.storage_path == str(tmp_path / "runs")
    assert cfg.data.cache_dir == str(tmp_path / "cache")
    gcs = absolute_local_paths(build_config(parse_args(build_parser(), ["train", "--data", "gs://bucket/data"])))
    assert gcs.data.path == "gs://bucket/data" and gcs.train.storage_path == ""


# Runs `gsenet train` in a fresh interpreter and reports whether Ray was ever imported.
_PROBE = """
import json, sys, time
from gsenet.cli import main
start = time.monotonic()
code = main(sys.argv[1:])
heavy = {name: name in sys.modules for name in ("ray", "torch", "mlflow")}
print(json.dumps({"code": code, "seconds": time.monotonic() - start, **heavy}))
"""


def _fails_before_ray(cwd: Path, *argv: str) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome, done.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "no_such_folder"], "no_such_folder: dataset folder does not exist"),
        (["--data", "data", "trian.epochs=1"], "unknown config key 'trian.epochs'"),
        (["--data", "data", "optim.lr=-1"], "optim.lr: must be positive"),
        (["--data", "data", "--mlflow-uri", "http://127.0.0.1:{port}"], "is not reachable"),
        (["--data", "broken"], "failed its checks"),
    ],
)
def test_errors_that_need_no_cluster_come_before_ray_starts(tmp_path, argv, message):
    make_dataset(tmp_path / "data", n_per_split=1)
    make_dataset(tmp_path / "broken", n_per_split=1)
    next((tmp_path / "broken" / "train").iterdir()).joinpath("ground_truth.wav").unlink()
    argv = [a.format(port=free_port()) for a in argv]
    outcome, stderr = _fails_before_ray(tmp_path, "train", *argv)
    assert outcome["code"] == 1, stderr
    assert message in stderr
    assert not (outcome["ray"] or outcome["torch"] or outcome["mlflow"]), outcome  # before any heavy import
    assert outcome["seconds"] < 20  # (3 s on an idle machine; generous for a loaded CI box)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "no_such_folder"], "no_such_folder: dataset folder does not exist"),
        (["--data", "data", "--mlflow-uri", "http://127.0.0.1:{port}"], "is not reachable"),
        (["--data", "data", "--set", "trian.epochs=1"], "trian.epochs"),
    ],
)
def test_search_errors_come_before_torch_mlflow_and_ray(tmp_path, argv, message):
    make_dataset(tmp_path / "data", n_per_split=1)
    argv = [a.format(port=free_port()) for a in argv]
    outcome, stderr = _fails_before_ray(tmp_path, "search", *argv)
    assert outcome["code"] == 1, stderr
    assert message in stderr
    assert not (outcome["ray"] or outcome["torch"] or outcome["mlflow"]), outcome
    assert outcome["seconds"] < 20
