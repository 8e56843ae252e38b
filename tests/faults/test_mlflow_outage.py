"""MLflow server down mid-run: a real `mlflow server` process stopped and restarted on the same
port (same SQLite store). Nothing logged during the outage is lost, it arrives in order, and the
end of the run says what, if anything, could not be delivered."""

from __future__ import annotations

import threading
import time

import pytest
from fixtures.mlflow_server import free_port, start_mlflow_server
from fixtures.recordings import make_dataset
from mlflow import MlflowClient

from faults.test_training_faults import tiny
from gsenet.tracking import RETRY_WINDOW_ENV, RunLogger

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
OUTAGE_S = 10.0


def _new_run(uri: str) -> str:
    client = MlflowClient(uri)
    experiment = client.create_experiment("outage")
    return client.create_run(experiment).info.run_id


def test_a_training_run_loses_nothing_while_mlflow_is_down(ray_local, tmp_path, monkeypatch, capfd):
    """Then, on the same server (starting one is slow on 2 cores), an outage longer than the retry
    window: the items are reported undelivered, kept on disk, and replayed by the next logger."""
    from gsenet.train import fit

    monkeypatch.setenv(RETRY_WINDOW_ENV, "240")  # rides out the outage below; what a worker gets from the driver
    epochs = 3
    data = make_dataset(tmp_path / "ds", n_per_split={"train": 2, "val": 1, "test": 1}, seconds=1.0, seed=5)
    server = start_mlflow_server(tmp_path / "mlflow")
    cfg = tiny(data, tmp_path, "outage", **{"train.epochs": epochs, "tracking.mlflow_uri": server.uri})
    outcome: dict = {}

    def train() -> None:
        try:
            outcome["result"] = fit(cfg)
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=train, daemon=True)
    try:
        thread.start()
        client = MlflowClient(server.uri)
        run_id = _wait_for_first_epoch(client, cfg.tracking.experiment, thread)
        server.stop()  # mid-run: epoch 1 logged, the rest still to come
        time.sleep(OUTAGE_S)
        down_until = time.time()
        server = start_mlflow_server(tmp_path / "mlflow", port=server.port)
        thread.join(timeout=400)
        assert not thread.is_alive() and "error" not in outcome, outcome
        out = "".join(capfd.readouterr())
        assert "logged item(s) delivered" in out and "could not be delivered" not in out, out[-3000:]

        client = MlflowClient(server.uri)
        history = client.get_metric_history(run_id, "val_loss")
        assert [m.step for m in history] == [3 * e for e in range(1, epochs + 1)]  # every epoch, in order
        logged_during_outage = [m for m in history if m.timestamp / 1000 < down_until and m.step > 3]
        assert logged_during_outage, "the outage did not overlap training; nothing was tested"
        audio = client.list_artifacts(run_id, "audio")
        epochs_with_audio = {a.path.rsplit("/", 1)[-1] for r in audio for a in client.list_artifacts(run_id, r.path)}
        assert epochs_with_audio == {f"epoch_{e:03d}" for e in range(1, epochs + 1)}
        assert client.get_run(run_id).info.status == "FINISHED"

        _check_give_up_and_replay(server.uri, tmp_path / "spool", monkeypatch)
    finally:
        thread.join(timeout=60)
        server.stop()


def _wait_for_first_epoch(client: MlflowClient, experiment: str, thread: threading.Thread) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert thread.is_alive(), "training ended before its first epoch was logged"
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        if runs and client.get_metric_history(runs[0].info.run_id, "val_loss"):
            return runs[0].info.run_id
        time.sleep(0.3)
    raise AssertionError("no epoch logged within 300 s")


def _check_give_up_and_replay(uri: str, spool, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # one HTTP try per attempt
    run_id = _new_run(uri)
    dead = f"http://127.0.0.1:{free_port()}"  # the same run, but the server cannot be reached
    logger = RunLogger(dead, run_id, retry_window_s=2.0, backoff_s=0.2, spool_dir=spool)
    for step in (1, 2, 3):
        logger.log_metrics({"val_loss": 1.0 / step}, step)
    logger.log_dict({"a": 1}, "system.json")
    summary = logger.close()
    assert "4 item(s) could not be delivered" in summary
    assert "metrics at step 1" in summary and "system.json" in summary and str(spool) in summary
    assert len(list(spool.glob("*.json"))) == 4  # kept on disk, not dropped

    replay = RunLogger(uri, run_id, retry_window_s=60.0, spool_dir=spool)  # e.g. a restarted worker
    assert "all 4 logged item(s) delivered" in replay.close()
    client = MlflowClient(uri)
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]  # in order
    assert {a.path for a in client.list_artifacts(run_id)} == {"system.json"}
    assert not spool.exists()
