"""MLflow tracking: the only module that imports mlflow.

One MLflow run per training run; a sweep adds one parent run with each trial's run nested under it.
The driver creates (or, on resume, finds) the run and logs what is
known before training: every config field as a param, the resolved config as YAML and the dataset
linter's summary. Rank 0 then logs through a `RunLogger`: metrics with step numbers, audio examples,
spectrograms and, at the end, the final and best models. Nothing here touches the environment or
MLflow's global state except `log_pyfunc_model`, which runs on the rank-0 worker (its own process).

Artifact layout of a training run (stable, so runs can be compared side by side in the UI):

    config.yaml                                     the resolved ExperimentConfig
    data/summary.json                               the dataset linter's summary
    system.json                                     torch / ray / python versions, device (rank 0)
    audio/<recording>/epoch_XXX/ref.wav             raw reference microphone
    audio/<recording>/epoch_XXX/beam.wav            beamformer output (GSENet's main input)
    audio/<recording>/epoch_XXX/enhanced.wav        the model's output after epoch XXX
    audio/<recording>/epoch_XXX/target.wav          clean target
    audio/<recording>/epoch_XXX/spectrograms.png    the four spectrograms side by side
    final_model/, best_model/                       MLflow pyfunc models (`mlflow.pyfunc.load_model`)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from gsenet.errors import TrackingError, TrackingUnreachableError
from gsenet.runtime import RETRY_WINDOW_ENV  # re-exported: tests and callers import it from here

log = logging.getLogger("gsenet.tracking")

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"  # in the working folder: the UI works with no server
DEFAULT_ARTIFACTS_DIR = "mlartifacts"
RUN_KEY_TAG = "gsenet.run_key"  # storage path + run name: how a resumed run finds its MLflow run
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: nests a run under another (a sweep's trials)
SIGNALS = ("ref", "beam", "enhanced", "target")


# ----------------------------------------------------------------------------------------------
# Where the tracking store is, and whether it answers
# ----------------------------------------------------------------------------------------------
def resolve_tracking_uri(uri: str = "") -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else ./mlruns.db; local paths made absolute.

    Absolute, because Ray workers do not run in the driver's working folder.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    elif "://" not in uri:  # a bare folder: MLflow's file store
        uri = Path(uri).resolve().as_uri()
    return uri


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:"))


def default_artifact_location(uri: str) -> str | None:
    """./mlartifacts next to a local store; None lets a server choose (proxied artifacts)."""
    if not _is_local_store(uri):
        return None
    if uri.startswith("sqlite:"):
        folder = Path(uri[len("sqlite:///") :]).parent
    else:
        folder = Path(uri[len("file://") :]).parent
    return (folder / DEFAULT_ARTIFACTS_DIR).resolve().as_uri()


def check_tracking_server(uri: str, timeout: float = 10.0) -> None:
    """Raise TrackingError (before any training) when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise TrackingUnreachableError(
        f"MLflow tracking server {uri} is not reachable ({problem}); start it (`mlflow server ...`), "
        "fix --mlflow-uri / MLFLOW_TRACKING_URI, or unset it to log to ./mlruns.db"
    )


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# MLflow 3's UI opens an experiment in its GenAI mode unless this tag says it holds model training.
EXPERIMENT_KIND_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def get_or_create_experiment(uri: str, name: str) -> str:
    client = _client(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        for key, value in EXPERIMENT_KIND_TAGS.items():
            if key not in experiment.tags:  # made by an older gsenet: open it in the training mode too
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location=default_artifact_location(uri), tags=EXPERIMENT_KIND_TAGS
        )
    except Exception:  # created concurrently by another trial
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def find_run_by_key(uri: str, experiment: str, run_key: str) -> tuple[str, str] | None:
    """(experiment id, run id) of the newest run of a training run (its storage path + name), or None."""
    client = _client(uri)
    found_experiment = client.get_experiment_by_name(experiment)
    if found_experiment is None:
        return None
    found = client.search_runs(
        [found_experiment.experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{_quote(run_key)}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return (found_experiment.experiment_id, found[0].info.run_id) if found else None


# ----------------------------------------------------------------------------------------------
# Driver side: one MLflow run per training run
# ----------------------------------------------------------------------------------------------
def start_training_run(
    uri: str,
    experiment: str,
    run_name: str,
    run_key: str,
    *,
    params: dict[str, Any],
    config_yaml: str,
    data_summary: dict | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Create the MLflow run of a training run, or return the unfinished one with the same key.

    Resuming (same storage path and name) continues in the same MLflow run, so its metrics read as
    one curve. Raises TrackingError when the store cannot be used.
    """
    check_tracking_server(uri)
    try:
        client = _client(uri)
        experiment_id = get_or_create_experiment(uri, experiment)
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{_quote(run_key)}'", max_results=1
        )
        if found and found[0].info.status != "FINISHED":
            client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
        all_tags = {RUN_KEY_TAG: run_key, **(tags or {})}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        run_id = run.info.run_id
        _log_params(client, run_id, params)
        client.log_text(run_id, config_yaml, "config.yaml")
        if data_summary is not None:
            client.log_dict(run_id, data_summary, "data/summary.json")
        return run_id
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot create the MLflow run at {uri} (experiment {experiment!r}): {exc}") from exc


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:6000]  # MLflow's param length limit


def _log_params(client, run_id: str, params: dict[str, Any]) -> None:
    """Every param, sorted, as text MLflow accepts, in batches of MLflow's limit (100)."""
    from mlflow.entities import Param

    items = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def finish_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Mark a run FINISHED / FAILED / KILLED (best effort: a tracking outage never fails training)."""
    try:
        _client(uri).set_terminated(run_id, status=status)
    except Exception as exc:
        log.warning("MLflow: could not mark run %s as %s: %s", run_id, status, exc)


# ----------------------------------------------------------------------------------------------
# Sweeps: one parent run per sweep, one nested child run per trial
# ----------------------------------------------------------------------------------------------
# Trials log their own child runs from inside training (start_training_run, given the parent run
# id and a `gsenet.trial_id` tag). The sweep driver only owns the parent run and closes each child
# with the trial's final state (completed / pruned / errored), because a trial that ASHA stops is
# killed before its own code could say so.
TRIAL_ID_TAG = "gsenet.trial_id"
SWEEP_TAG = "gsenet.sweep"
STATE_TAG = "gsenet.trial_state"
NOTE_TAG = "mlflow.note.content"  # the run page's Description, rendered as markdown by the MLflow UI
# trial state -> MLflow run status
RUN_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "errored": "FAILED"}


def start_parent_run(uri: str, experiment: str, sweep_name: str, params: dict[str, Any], space_text: str) -> str:
    """Create the sweep's parent run; returns its id. Raises TrackingError if MLflow is unreachable."""
    client = _client(uri)
    try:
        check_tracking_server(uri)
        experiment_id = get_or_create_experiment(uri, experiment)
        run = client.create_run(
            experiment_id, run_name=sweep_name, tags={SWEEP_TAG: sweep_name, "gsenet.kind": "sweep"}
        )
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot create the sweep's MLflow run at {uri}: {exc} (is the server up?)") from None
    run_id = run.info.run_id
    _log_params(client, run_id, params)
    client.log_text(run_id, space_text, "search_space.yaml")
    return run_id


def reopen_run(uri: str, run_id: str) -> None:
    """Set a run RUNNING again (a resumed sweep's parent)."""
    _client(uri).update_run(run_id, status="RUNNING")


def child_runs(uri: str, parent_run_id: str) -> list:
    """All child runs of a sweep (any status)."""
    client = _client(uri)
    parent = client.get_run(parent_run_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=10000
    )


def finish_trial_run(
    uri: str, parent_run_id: str, trial_id: str, state: str, params: dict[str, Any], metrics: dict[str, float]
) -> str:
    """Tag the trial's child run with its final state and close it; create the child if training never did."""
    client = _client(uri)
    runs = [r for r in child_runs(uri, parent_run_id) if r.data.tags.get(TRIAL_ID_TAG) == trial_id]
    if runs:
        run_id = runs[0].info.run_id
    else:  # the trial died before training could open its run: keep one child per trial anyway
        parent = client.get_run(parent_run_id)
        tags = {PARENT_TAG: parent_run_id, TRIAL_ID_TAG: trial_id, SWEEP_TAG: parent.data.tags.get(SWEEP_TAG, "")}
        run_id = client.create_run(parent.info.experiment_id, run_name=trial_id, tags=tags).info.run_id
        _log_params(client, run_id, params)
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
    for extra in runs[1:]:  # a resumed trial may have opened a second run; close it the same way
        close_trial_run(uri, extra.info.run_id, state, RUN_STATUS[state])
    close_trial_run(uri, run_id, state, RUN_STATUS[state])
    return run_id


def close_trial_run(uri: str, run_id: str, state: str, status: str) -> None:
    """Tag a trial's child run with `state` and end it with MLflow `status` (e.g. a run its killed driver left RUNNING)."""
    client = _client(uri)
    client.set_tag(run_id, STATE_TAG, state)
    client.set_terminated(run_id, status)


def name_run(uri: str, run_id: str, name: str) -> None:
    """Rename a run (trial child runs get short names that say what differs; see SearchSpace.trial_label).

    Best effort: a run keeps its long name rather than a trial failing over a transient MLflow error."""
    try:
        _client(uri).update_run(run_id, name=name)
    except Exception as exc:
        log.warning("could not rename MLflow run %s to %r: %s", run_id, name, exc)


def set_run_note(uri: str, run_id: str, markdown: str) -> None:
    """Set the run's description (e.g. the sweep's summary on the parent run's page)."""
    _client(uri).set_tag(run_id, NOTE_TAG, markdown)


def log_artifacts(uri: str, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
    _client(uri).log_artifacts(run_id, str(folder), artifact_path)


def log_metrics(uri: str, run_id: str, metrics: dict[str, float]) -> None:
    client = _client(uri)
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))


# ----------------------------------------------------------------------------------------------
# Rank 0: a logger that never blocks or fails training
# ----------------------------------------------------------------------------------------------
DEFAULT_RETRY_WINDOW_S = 600.0
# MLflow answers for requests that are wrong, not for an outage: retrying them cannot help.
_PERMANENT_MLFLOW_ERRORS = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE"}


def default_spool_dir(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / "gsenet-mlflow-spool" / run_id


class RunLogger:
    """Logs to one MLflow run from a background thread, in order, riding out server outages.

    Training only enqueues. Each item (metrics, tags, a JSON artifact, an audio folder) is first
    written to a spool folder on local disk, then sent; while MLflow is unreachable the item at
    the head is retried with back-off for up to `retry_window_s` (default 10 minutes, or
    $GSENET_MLFLOW_RETRY_WINDOW_S) and everything behind it waits, so the server receives the
    items in the order they were logged. Items that could not be delivered stay in the spool
    folder; `close()` says which (a restarted worker of the same run replays them first).
    """

    def __init__(
        self,
        uri: str,
        run_id: str,
        retry_window_s: float | None = None,
        backoff_s: float = 1.0,
        spool_dir: str | Path | None = None,
    ):
        self.uri, self.run_id = uri, run_id
        self.client = _client(uri)
        if retry_window_s is None:
            retry_window_s = float(os.environ.get(RETRY_WINDOW_ENV, DEFAULT_RETRY_WINDOW_S))
        self.retry_window_s, self.backoff_s = retry_window_s, backoff_s
        self.spool = Path(spool_dir) if spool_dir else default_spool_dir(run_id)
        self.spool.mkdir(parents=True, exist_ok=True)
        self.delivered, self.undelivered, self.retried = 0, [], 0
        self._outage_since: float | None = None
        self._lock = threading.Lock()
        left = sorted(self.spool.glob("*.json"))  # what an earlier attempt of this run did not deliver
        self._next = int(left[-1].stem) + 1 if left else 0
        self._queue: queue.Queue = queue.Queue()
        for path in left:
            self._queue.put(path)
        if left:
            log.warning("MLflow: replaying %d item(s) left in %s by an earlier attempt", len(left), self.spool)
        self._thread = threading.Thread(target=self._work, name="mlflow-logger", daemon=True)
        self._thread.start()

    @property
    def failures(self) -> int:
        return len(self.undelivered)

    # --- the spool ----------------------------------------------------------------------------
    def _reserve(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1

    def _spool_item(self, what: str, kind: str, payload: Any, seq: int | None = None) -> None:
        seq = self._reserve() if seq is None else seq
        path = self.spool / f"{seq:09d}.json"
        try:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps({"what": what, "kind": kind, "payload": payload}))
            tmp.replace(path)
        except OSError as exc:  # a full local disk must not stop training: keep it in memory
            log.warning("MLflow: cannot spool %s to %s (%s); keeping it in memory", what, self.spool, exc)
            self._queue.put({"what": what, "kind": kind, "payload": payload})
            return
        self._queue.put(path)

    def _send(self, kind: str, payload: Any) -> None:
        from mlflow.entities import Metric, RunTag

        if kind == "metrics":
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in payload])
        elif kind == "tags":
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in payload.items()])
        elif kind == "dict":
            self.client.log_dict(self.run_id, payload["values"], payload["artifact_file"])
        elif kind == "artifacts":
            self.client.log_artifacts(self.run_id, payload["folder"], payload["artifact_path"])
        else:
            raise ValueError(f"unknown spool item kind {kind!r}")

    def _deliver(self, record: dict) -> bool:
        """Send one item, retrying through an outage; False when the retry window has passed."""
        attempt = 0
        while True:
            try:
                self._send(record["kind"], record["payload"])
            except Exception as exc:
                if getattr(exc, "error_code", "") in _PERMANENT_MLFLOW_ERRORS:
                    log.warning("MLflow refused %s: %s", record["what"], exc)
                    return False
                now = time.monotonic()
                if self._outage_since is None:
                    self._outage_since = now
                    log.warning(
                        "MLflow unreachable (%s); keeping logs in %s and retrying for up to %.0f s",
                        exc, self.spool, self.retry_window_s,
                    )  # fmt: skip
                if now - self._outage_since >= self.retry_window_s:
                    log.warning(
                        "MLflow: gave up on %s after %.0f s of outage", record["what"], now - self._outage_since
                    )
                    return False
                self.retried += 1
                time.sleep(
                    min(self.backoff_s * 2**attempt, 10.0, max(0.0, self.retry_window_s - (now - self._outage_since)))
                )
                attempt += 1
                continue
            if self._outage_since is not None:
                log.warning("MLflow is back after %.0f s; sending what was kept", time.monotonic() - self._outage_since)
                self._outage_since = None
            return True

    def _work(self) -> None:
        import shutil

        while True:
            item = self._queue.get()
            if item is None:
                return
            if callable(item):  # a flush marker
                item()
                continue
            try:
                record = item if isinstance(item, dict) else json.loads(item.read_text())
            except (OSError, ValueError) as exc:
                self.undelivered.append(f"{item} (unreadable: {exc})")
                continue
            if not self._deliver(record):
                self.undelivered.append(record["what"])
                continue  # its files stay in the spool folder
            self.delivered += 1
            if isinstance(item, Path):
                item.unlink(missing_ok=True)
                if record["kind"] == "artifacts":
                    shutil.rmtree(record["payload"]["folder"], ignore_errors=True)

    # --- what training calls --------------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [
            (k, float(v), now, int(step))
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))
        ]
        self._spool_item(f"metrics at step {step}", "metrics", items)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._spool_item("tags", "tags", {k: str(v) for k, v in tags.items()})

    def log_dict(self, values: dict, artifact_file: str) -> None:
        self._spool_item(artifact_file, "dict", {"values": values, "artifact_file": artifact_file})

    def log_audio_example(self, recording: str, epoch: int, signals: dict[str, np.ndarray], sample_rate: int) -> str:
        """Write ref/beam/enhanced/target WAVs and their spectrograms; returns the artifact folder."""
        artifact_path = audio_artifact_path(recording, epoch)
        seq = self._reserve()
        folder = self.spool / f"{seq:09d}.files"
        folder.mkdir(parents=True, exist_ok=True)
        write_audio_example(folder, signals, sample_rate, title=f"{recording}, epoch {epoch}")
        payload = {"folder": str(folder), "artifact_path": artifact_path}
        self._spool_item(f"audio {artifact_path}", "artifacts", payload, seq)
        return artifact_path

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued so far is delivered (or given up)."""
        done = threading.Event()
        self._queue.put(done.set)
        done.wait(self.retry_window_s + 120 if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> str:
        """Deliver what is queued, stop, and say (print and return) what could not be delivered."""
        self._queue.put(None)
        self._thread.join(self.retry_window_s + 120 if timeout is None else timeout)
        if self.undelivered:
            summary = (
                f"MLflow: {len(self.undelivered)} item(s) could not be delivered to run {self.run_id} at {self.uri} "
                f"(kept in {self.spool}): {', '.join(self.undelivered)}"
            )
        else:
            summary = f"MLflow: all {self.delivered} logged item(s) delivered to run {self.run_id}"
            if not any(self.spool.iterdir()):
                self.spool.rmdir()
        print(f"gsenet: {summary}", flush=True)
        return summary


def audio_artifact_path(recording: str, epoch: int) -> str:
    return f"audio/{recording}/epoch_{epoch:03d}"


def write_audio_example(folder: Path, signals: dict[str, np.ndarray], sample_rate: int, title: str = "") -> None:
    """{ref, beam, enhanced, target}.wav (float WAV: no clipping) and spectrograms.png."""
    from gsenet.audio import write_audio

    for name in SIGNALS:
        if name in signals:
            write_audio(folder / f"{name}.wav", signals[name], sample_rate, subtype="FLOAT")
    spectrogram_figure(signals, sample_rate, folder / "spectrograms.png", title)


def spectrogram_figure(signals: dict[str, np.ndarray], sample_rate: int, path: Path, title: str = "") -> Path:
    """One PNG with the log-magnitude spectrograms of the given signals side by side (Agg, no pyplot)."""
    from matplotlib.figure import Figure
    from scipy.signal import stft

    names = [n for n in SIGNALS if n in signals]
    fig = Figure(figsize=(4 * len(names), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True))
    for ax, name in zip(axes, names, strict=True):
        freqs, times, spec = stft(signals[name], fs=sample_rate, nperseg=512, noverlap=384)
        db = 20 * np.log10(np.abs(spec) + 1e-6)
        ax.pcolormesh(times, freqs / 1000, db, vmin=-100, vmax=-10, shading="auto", cmap="magma")
        ax.set_title(name)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (kHz)")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=80)
    return path


# ----------------------------------------------------------------------------------------------
# Models: a pyfunc around a state dict + config (robust; no torch.export / pickle of the module)
# ----------------------------------------------------------------------------------------------
class GSENetPyfunc(mlflow.pyfunc.PythonModel):
    """Input {"beam": float32[B, L] or [L], "ref": same}; output the enhanced float32 waveform."""

    def load_context(self, context):
        from gsenet.model_files import load_local_model

        self.model, _ = load_local_model(context.artifacts["model"])

    # The input is really a dict of arrays. MLflow warns on every import when `predict` has no type
    # hint, and rejects hints it cannot turn into a schema (dict[...]); np.ndarray is one it accepts
    # without validating anything, exactly like no hint. The logged signature validates the input.
    def predict(self, context, model_input: np.ndarray, params=None):
        from gsenet.enhance import enhance_arrays

        if not isinstance(model_input, dict) or not {"beam", "ref"} <= set(model_input):
            raise ValueError('GSENet pyfunc input must be a dict {"beam": array, "ref": array}')
        beam = np.asarray(model_input["beam"], dtype=np.float32)
        ref = np.asarray(model_input["ref"], dtype=np.float32)
        return enhance_arrays(self.model, beam, ref)


@contextlib.contextmanager
def fluent_uris(uri: str):
    """MLflow's fluent API (mlflow.pyfunc.log_model needs it) pointed at `uri` for the block only.

    mlflow.set_tracking_uri / set_registry_uri are process-wide and also export MLFLOW_TRACKING_URI /
    MLFLOW_REGISTRY_URI to the environment: left set, every later client in the process (an
    MlflowClient without a registry URI) and every subprocess would talk to this server, long after
    it is gone. So the previous values, and the environment, are put back afterwards."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = tracking_utils._tracking_uri, registry_utils._registry_uri, {k: os.environ.get(k) for k in names}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved[0], saved[1]
        for name, value in saved[2].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def log_pyfunc_model(uri: str, run_id: str, model_folder: Path, name: str, *, sample_rate: int = 16000) -> str:
    """Log an exported model folder (model.pt + model.yaml) as an MLflow pyfunc model in `run_id`.

    The gsenet package is shipped as code, so `mlflow.pyfunc.load_model(...)` works with no
    training code installed. Returns the model URI. Runs on the rank-0 worker (fluent API).
    """
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    example = {
        "beam": np.zeros((1, sample_rate // 10), np.float32),
        "ref": np.zeros((1, sample_rate // 10), np.float32),
    }
    waveform = TensorSpec(np.dtype(np.float32), (-1, -1))  # (batch, time): any batch, any length
    signature = ModelSignature(
        inputs=Schema(
            [TensorSpec(np.dtype(np.float32), (-1, -1), "beam"), TensorSpec(np.dtype(np.float32), (-1, -1), "ref")]
        ),
        outputs=Schema([waveform]),
    )
    with tempfile.TemporaryDirectory(prefix="gsenet-code-") as code, fluent_uris(uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=GSENetPyfunc(),
            artifacts={"model": str(model_folder)},
            code_paths=[str(package_source(Path(code) / "gsenet"))],
            signature=signature,
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pyyaml"],
        )
    return info.model_uri


def package_source(destination: Path) -> Path:
    """A copy of the gsenet package as a model ships it: its source and configs, without the
    pretrained models' weights (1.2 MB that every logged model would otherwise carry) or bytecode."""
    package = Path(__file__).resolve().parent
    shutil.copytree(package, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "pretrained"))
    return destination


BEST_ALIAS = "best"  # the alias every registration sets: models:/NAME@best


def logged_model(uri: str, run_id: str, name: str = "best_model"):
    """The run's logged MLflow model called `name`, newest first (None if it logged none).

    MLflow 3 keeps logged models beside the run (models:/m-<id>), not in its artifact folder, so
    listing the run's artifacts does not find them."""
    from mlflow.entities import LoggedModelStatus

    client = _client(uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{_quote(run_id)}'")
    # READY only: a model whose upload was cut short stays PENDING (or FAILED) and must not count.
    matches = [m for m in found if m.name == name and m.status == LoggedModelStatus.READY]
    return max(matches, key=lambda m: m.creation_timestamp) if matches else None


def log_checkpoint_as_model(uri: str, run_id: str, checkpoint: str | Path, name: str = "best_model") -> str:
    """Log a (local) training checkpoint's weights + config as the run's pyfunc model `name`."""
    from gsenet.model_files import load_local_model, model_config_of, save_model_folder

    model, cfg = load_local_model(checkpoint)
    with tempfile.TemporaryDirectory(prefix="gsenet-model-") as folder:
        model_folder = save_model_folder(model.state_dict(), model_config_of(cfg), Path(folder) / name)
        return log_pyfunc_model(uri, run_id, model_folder, name, sample_rate=model.cfg.sample_rate)


def register_model(uri: str, run_id: str, name: str, model_name: str = "best_model") -> tuple[str, str]:
    """Register the run's logged model `model_name` as `name` with alias `best`; returns (URI, version).

    The model is downloaded and loaded first, so the registry never points at an empty or broken
    folder: a run without a loadable model raises TrackingError and nothing is registered."""
    from gsenet.model_files import load_local_model

    client = _client(uri)
    model = logged_model(uri, run_id, model_name)
    if model is None:
        raise TrackingError(f"run {run_id} logged no {model_name!r} model: nothing to register as {name!r}")
    source = f"models:/{model.model_id}"
    try:
        load_local_model(download_model(source, uri))
    except Exception as exc:
        raise TrackingError(f"run {run_id}'s {model_name!r} does not load ({exc}): not registered as {name!r}") from exc
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    # A registry on a store file (sqlite:///, no server) looks the logged model up through
    # MlflowClient() with the process-wide tracking URI: point it at this store for the call.
    with fluent_uris(uri):
        version = client.create_model_version(name, source, run_id=run_id, model_id=model.model_id).version
    client.set_registered_model_alias(name, BEST_ALIAS, version)
    return f"models:/{name}@{BEST_ALIAS}", str(version)


def download_model(source: str, tracking_uri: str = "") -> Path:
    """Download an MLflow model (`models:/name@alias`, `models:/name/3`, `models:/m-<id>`,
    `runs:/<id>/best_model`) from the given store to a local folder.

    `models:/` URIs are resolved here with an explicit client: MLflow's own resolver uses the
    process-wide registry URI and ignores the one passed to `download_artifacts`.
    """
    from mlflow.artifacts import download_artifacts

    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_server(uri)
    try:
        location = _resolve_models_uri(_client(uri), source) if source.startswith("models:/") else source
        return Path(download_artifacts(artifact_uri=location, tracking_uri=uri, registry_uri=uri))
    except Exception as exc:
        raise TrackingError(f"cannot download MLflow model {source} from {uri}: {exc}") from exc


def _resolve_models_uri(client, source: str) -> str:
    """models:/... -> the artifact location of the logged model it names."""
    path = source[len("models:/") :].strip("/")
    if "/" not in path and "@" not in path:  # models:/m-<id>: a logged model
        return client.get_logged_model(path).artifact_location
    if "@" in path:
        name, alias = path.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, number = path.split("/", 1)
        if number.isdigit():
            version = client.get_model_version(name, number)
        else:  # "latest"
            versions = client.search_model_versions(f"name = '{_quote(name)}'")
            version = max(versions, key=lambda v: int(v.version))
    location = version.source
    if location.startswith("models:/"):  # MLflow 3: the version points at a logged model
        return client.get_logged_model(location[len("models:/") :].strip("/")).artifact_location
    return location


# ----------------------------------------------------------------------------------------------
# Evaluation results
# ----------------------------------------------------------------------------------------------
def log_evaluation(uri: str, experiment: str, run_name: str, summary: dict[str, float], csv_path: Path, **tags) -> str:
    """One MLflow run holding an evaluation's mean metrics and its per-recording CSV."""
    check_tracking_server(uri)
    client = _client(uri)
    experiment_id = get_or_create_experiment(uri, experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if math.isfinite(float(v))]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.log_artifact(run.info.run_id, str(csv_path))
    client.set_terminated(run.info.run_id)
    return run.info.run_id
