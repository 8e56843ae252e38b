"""The MLflow UI in a real browser (headless Chromium) after a small sweep against a real MLflow server.

What a user comparing trials must see, from the links the sweep's summary prints: the "trials" link
opens the experiment in its model-training mode with every trial as a row (not collapsed under the
parent), best first (by its best epoch), with its short name, its searched params, `best_val_si_sdr`,
`best_epoch` and the last `val_si_sdr` as columns; a trial's
artifacts hold the audio examples and spectrograms; the registry shows the `best` alias.
Screenshots of each page are saved in the test's folder. Skipped (with the reason) only where no
Chromium is installed (`apt-get install chromium`).

Kept cheap (CI time): 2 trials x 1 epoch (the fewest that still make a comparison), one Chromium
start per page (DOM and screenshot together), three pages.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fixtures.mlflow_server import mlflow_server  # noqa: F401

from gsenet.mlflow_ui import ui_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
SEARCHED = ("model.width_multiplier", "model.dilation_depth", "loss.si_sdr", "optim.lr")  # search/spaces/smoke.yaml


def browse(url: str, screenshot: Path, budget_ms: int = 12000) -> str:
    """The page's DOM after its JavaScript ran (virtual time: pending fetches hold the clock, so
    the budget only bounds timers), and a screenshot of it, from one Chromium start."""
    # A full-HD screen: the runs table renders only the columns in view (ag-grid virtualises them).
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1920,1000"]
    command += [f"--virtual-time-budget={budget_ms}", "--run-all-compositor-stages-before-draw"]
    command += [f"--screenshot={screenshot}", "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=True)
    screenshot.with_suffix(".html").write_text(done.stdout)  # what the assertions read, for a failure's post-mortem
    return done.stdout


class _Grid(HTMLParser):
    """The runs table's cells: {row-index: {col-id: text}} (ag-grid splits a row into containers)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._row = self._col = None
        self._depth = 0  # open tags inside the current cell

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._col is not None:
            self._depth += tag not in self.VOID  # void elements have no end tag
        elif attrs.get("role") == "row" and "row-index" in attrs:
            self._row = self.rows.setdefault(attrs["row-index"], {})
        elif self._row is not None and attrs.get("role") == "gridcell" and "col-id" in attrs:
            self._col, self._depth = attrs["col-id"], 0
            self._row[self._col] = ""

    def handle_endtag(self, tag):
        if self._col is not None:
            if self._depth == 0:
                self._col = None
            else:
                self._depth -= 1

    def handle_data(self, data):
        if self._col is not None:
            self._row[self._col] += data


def table(dom: str) -> list[dict[str, str]]:
    grid = _Grid()
    grid.feed(dom)
    return [grid.rows[k] for k in sorted(grid.rows, key=int)]


def _walk(client, run_id: str, path: str):
    for item in client.list_artifacts(run_id, path):
        yield from _walk(client, run_id, item.path) if item.is_dir else [item]


def printed_link(output: str, label: str) -> str:
    match = re.search(rf"^\s+{label}:\s+(http\S+)$", output, re.M)
    assert match, f"no '{label}:' link in the summary:\n{output[-3000:]}"
    return match.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_trials_are_comparable_in_the_mlflow_ui(mlflow_server, tmp_path):  # noqa: F811
    from mlflow import MlflowClient

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    sweep = subprocess.run(
        [sys.executable, "-m", "gsenet", "search", "--smoke-test", "--num-samples", "2", "--max-epochs", "1",
         "--scheduler", "fifo", "--optuna-storage", "", "--mlflow-uri", mlflow_server.uri],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    (tmp_path / "sweep.log").write_text(sweep.stdout + sweep.stderr)
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-6000:]
    assert "View run" not in sweep.stdout  # MLflow's own links (no model-training mode) are silenced
    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("gsenet")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("gsenet.trial_id")]
    assert len(trials) == 2
    trials.sort(key=lambda r: r.data.metrics["best_val_si_sdr"], reverse=True)  # by its best epoch

    # The summary's "trials:" link: a flat table of exactly this sweep's trials, best first.
    link = printed_link(sweep.stdout, "trials")
    assert "workflowType=machine_learning" in link and "viewStateShareKey=" in link
    page = browse(link, tmp_path / "trials.png")
    assert "Model training" in page
    rows = table(page)
    assert len(rows) == len(trials), rows
    for row, trial in zip(rows, trials, strict=True):
        assert row["attributes.`Run Name`"].strip().endswith(trial.info.run_name), (row, trial.info.run_name)
        for key in ("best_val_si_sdr", "val_si_sdr"):
            shown = float(row[f"metrics.`{key}`"])  # the UI rounds for display
            assert math.isclose(shown, trial.data.metrics[key], abs_tol=0.01), (key, row, trial.data.metrics)
        for key in SEARCHED:
            assert row[f"params.`{key}`"].strip() == trial.data.params[key], key
        assert row["tags.`gsenet.trial_state`"].strip() == "completed"
    assert trials[0].info.run_name.split()[1].startswith("w")  # short names say what differs, e.g. "e1ccc2ff w1 d2 ..."
    parent_id = trials[0].data.tags["mlflow.parentRunId"]
    assert f"/runs/{parent_id}?" in printed_link(sweep.stdout, "sweep run")

    # A trial's artifacts, opened at its spectrograms: the tree shows the audio beside them.
    best = trials[0]
    spectrograms = next(a.path for a in _walk(client, best.info.run_id, "audio") if a.path.endswith("spectrograms.png"))
    url = ui_url(mlflow_server.uri, experiment.experiment_id, best.info.run_id, f"artifacts/{spectrograms}")
    page = browse(url, tmp_path / "artifacts.png")
    for text in ("audio", "spectrograms.png", "enhanced.wav", "config.yaml"):
        assert text in page, text
    page = browse(ui_url(mlflow_server.uri, model="gsenet-smoke"), tmp_path / "registry.png")
    assert "best" in page
    shots = sorted(p.name for p in tmp_path.glob("*.png") if p.stat().st_size > 0)
    assert shots == ["artifacts.png", "registry.png", "trials.png"]
    print(f"screenshots in {tmp_path}")
