"""Errors a user can act on. The CLI prints their message (no traceback) and exits non-zero.

Every message names the file, key or service at fault and says how to fix it.
"""

from __future__ import annotations


class GSENetError(Exception):
    """Base class of expected, user-facing failures."""


class DataError(GSENetError):
    """A recording, file or dataset is missing, corrupt or inconsistent."""


class StorageError(GSENetError):
    """A gs:// bucket or object cannot be read (missing, no credentials, unreachable)."""


class TransientError(GSENetError):
    """A failure that may go away by itself (a service not answering yet): worth a retry."""


class TrackingError(GSENetError):
    """The MLflow tracking server cannot be used."""


class TrackingUnreachableError(TrackingError, TransientError):
    """The MLflow tracking server does not answer (down, restarting, network): it may come back."""


class TrainingError(GSENetError):
    """Training cannot go on (e.g. a non-finite loss)."""


class ModelLoadError(GSENetError):
    """A checkpoint or model folder cannot be loaded (missing, wrong keys, wrong config)."""


class DiskFullError(GSENetError):
    """No space left where a checkpoint, cache or spool file is written (the message names it)."""


class SweepError(GSENetError):
    """A sweep cannot start or resume; the message says why and what to do."""
