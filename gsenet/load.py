"""One loader for trained models, whatever their source: `gsenet enhance / evaluate / export`, the
benchmarks and the MLflow pyfunc all load through here (or, for a local folder, model_files).

Sources: a checkpoint folder, a model folder, a Ray Train run folder (its newest valid checkpoint),
a downloaded MLflow model, an MLflow URI (`models:/name@alias`, `runs:/<id>/best_model`), or
`pretrained:<name>`: a model folder shipped in the package (gsenet/pretrained/<name>/, with its
model card README.md).
"""

from __future__ import annotations

from pathlib import Path

from gsenet.config import ExperimentConfig, ModelConfig
from gsenet.errors import ModelLoadError
from gsenet.model import GSENet
from gsenet.model_files import MODEL_WEIGHTS, load_local_model

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
PRETRAINED_PREFIX = "pretrained:"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def load_model(source: str | Path, tracking_uri: str = "") -> tuple[GSENet, ExperimentConfig | ModelConfig]:
    """(GSENet in eval mode on CPU, its config) from any source above.

    A checkpoint gives the full ExperimentConfig, a model folder its ModelConfig.
    """
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        return load_local_model(pretrained_folder(text[len(PRETRAINED_PREFIX) :]))
    if text.startswith(MLFLOW_SCHEMES):
        from gsenet.tracking import download_model

        return load_local_model(download_model(text, tracking_uri))
    if text.startswith("gs://"):  # a checkpoint or model folder in a bucket (a gs:// sweep's "Best checkpoint")
        from gsenet.model_files import download_stored_folder

        return load_local_model(download_stored_folder(text))
    return load_local_model(text)


def pretrained_names() -> list[str]:
    """Names of the models shipped in gsenet/pretrained/ (folders with weights and config)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / MODEL_WEIGHTS).is_file())


def pretrained_folder(name: str) -> Path:
    """The model folder of a shipped model; a clear error naming the available ones otherwise."""
    if name not in pretrained_names():
        available = ", ".join(f"pretrained:{n}" for n in pretrained_names()) or "none"
        raise ModelLoadError(f"pretrained:{name}: no such shipped model (available: {available})")
    return PRETRAINED_DIR / name
