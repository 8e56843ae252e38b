"""Which training failures Ray Train retries: lost workers and nodes, not errors that cannot go away.

Ray Train restarts the worker group from the latest checkpoint for any worker error, up to
`FailureConfig(max_failures)` times. A non-finite loss, a full disk, a corrupt recording or a
config error comes back the same way every time, so retrying it only triples the time to fail:
those are our own `GSENetError`s, raised on purpose with a message for the user, and end the run at
once. A worker that died (its process or node lost, a preemption) is still retried, and so is a
`TransientError` (a service such as the MLflow server not answering yet).

This plugs into Ray Train's failure policy, a DeveloperAPI of Ray 2.60 (checked in its code):
`DataParallelTrainer._initialize_and_run_controller(failure_policy=...)`.

The same trainer also leaves out Ray Train's Ray Data plumbing when a run has no Ray Datasets (a
gsenet run never has: its workers read their own files): see `without_unused_datasets`.
"""

from __future__ import annotations

import logging

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks import DatasetsCallback
from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy
from ray.train.v2._internal.execution.failure_handling.default import _is_preemption_failure
from ray.train.v2._internal.execution.failure_handling.failure_policy import FailureDecision
from ray.train.v2.api.exceptions import WorkerGroupError

from gsenet.errors import GSENetError, TransientError

log = logging.getLogger("gsenet.train")


def find_user_error(exc: BaseException | None) -> GSENetError | None:
    """The GSENetError behind `exc` (Ray wraps a worker's exception per rank, in causes)."""
    candidates = [exc, *getattr(exc, "worker_failures", {}).values(), getattr(exc, "controller_failure", None)]
    for error in candidates:
        seen = 0
        while error is not None and seen < 20:
            if isinstance(error, GSENetError):
                return error
            error, seen = error.__cause__ or getattr(error, "cause", None), seen + 1
    return None


def cannot_go_away(exc: BaseException | None) -> GSENetError | None:
    """The GSENetError behind `exc` unless it is a TransientError (a service that may come back):
    what a retry would only hit again. None = worth retrying (lost worker, unreachable server)."""
    error = find_user_error(exc)
    return None if isinstance(error, TransientError) else error


class FailFastOnUserErrors(DefaultFailurePolicy):
    """Ray's policy, except that a worker group failing with a GSENetError is not retried."""

    def make_decision(self, training_failed_error):
        if (
            isinstance(training_failed_error, WorkerGroupError)
            and not _is_preemption_failure(training_failed_error)
            and cannot_go_away(training_failed_error) is not None
        ):
            log.info("not retrying: %s", cannot_go_away(training_failed_error))
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


def without_unused_datasets(callbacks: list, datasets: dict | None) -> list:
    """Ray Train's default callbacks minus its DatasetsCallback when there are no Ray Datasets.

    That callback starts a `DatasetManager` actor for every run, datasets or not: a fresh Python
    process importing ray.data (~2 CPU-s), and it sends ray.data's context to every worker. A sweep
    trial paid this on 2 cores shared with the other trial (benchmarks/startup_speed.py
    --cpu-by-process). With datasets it stays.
    """
    if datasets:
        return callbacks
    return [callback for callback in callbacks if not isinstance(callback, DatasetsCallback)]


class GSENetTrainer(TorchTrainer):
    """TorchTrainer with FailFastOnUserErrors as its failure policy and no Ray Data plumbing
    when it has no Ray Datasets (`DataParallelTrainer._create_default_callbacks`, Ray 2.60)."""

    def _create_default_callbacks(self):
        return without_unused_datasets(super()._create_default_callbacks(), self.datasets)

    def _initialize_and_run_controller(self, **controller_init_kwargs):
        controller_init_kwargs["failure_policy"] = FailFastOnUserErrors(self.run_config.failure_config)
        return super()._initialize_and_run_controller(**controller_init_kwargs)
