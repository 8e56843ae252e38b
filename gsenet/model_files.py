"""What a trained model looks like on disk, and reading it back (local folders; a gs:// folder is
checked in place or downloaded to the cache first).

A *model folder* is self-contained: `model.pt` (a plain state dict, loadable with
`torch.load(weights_only=True)`), `model.yaml` (the ModelConfig) and `versions.json` (the software
that wrote it), plus `model.onnx` or `model.ts` when exported in those formats. A *checkpoint
folder* (Ray Train) holds `checkpoint.pt` (model, optimizer, scheduler, step, config, data
position) and `config.yaml`. A downloaded MLflow pyfunc holds a model folder under artifacts/.

Loading from any source (MLflow URIs, `pretrained:<name>`) is gsenet.load's job; this module
knows nothing of MLflow, so gsenet.tracking can use it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from gsenet.checkpoint import CHECKPOINT_FILE, CorruptCheckpointError, newest_valid, read_checkpoint
from gsenet.config import ConfigError, ExperimentConfig, ModelConfig, from_dict, to_dict
from gsenet.errors import ModelLoadError
from gsenet.model import GSENet

MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "model.yaml"
MODEL_VERSIONS = "versions.json"
MODEL_FORMAT = 1  # bump when a model folder changes in a way older readers cannot load


def save_model_folder(state_dict: dict, model_cfg: ModelConfig, out: str | Path) -> Path:
    """Write a self-contained model folder: model.pt (state dict), model.yaml (ModelConfig) and
    versions.json (the software that made it, and the folder format it follows)."""
    import json

    import gsenet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    torch.save(state, out / MODEL_WEIGHTS)
    (out / MODEL_CONFIG).write_text(yaml.safe_dump(to_dict(model_cfg), sort_keys=False))
    versions = {"format": MODEL_FORMAT, "gsenet": gsenet.__version__, "torch": torch.__version__}
    (out / MODEL_VERSIONS).write_text(json.dumps(versions, indent=2))
    return out


def _check_versions(folder: Path) -> None:
    """Refuse a model folder written in a newer format than this gsenet reads (older ones lack the file)."""
    import json

    path = folder / MODEL_VERSIONS
    if not path.is_file():
        return
    try:
        versions = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc})") from None
    if int(versions.get("format", 0)) > MODEL_FORMAT:
        raise ModelLoadError(
            f"{folder}: written by gsenet {versions.get('gsenet')} in model format {versions.get('format')}; this "
            f"gsenet reads format {MODEL_FORMAT} at most: upgrade gsenet (pip install -U gsenet) to load it"
        )


def stored_uri(path: str, filesystem) -> str:
    """A path Ray gives relative to its storage filesystem (checkpoint.path, result.path) as a URI:
    "bucket/prefix/..." on a GcsFileSystem is gs://bucket/prefix/...; local paths stay as they are."""
    if "://" in path or filesystem is None or filesystem.type_name != "gcs":
        return path
    return f"gs://{path}"


def stored_checkpoint_problem(uri: str) -> str | None:
    """Why the checkpoint folder at gs://bucket/prefix is not complete (None when it is): its manifest
    must be readable and name files of exactly the sizes it lists. The bytes themselves are checked
    (sha256) when the folder is downloaded to be loaded."""
    import json

    import pyarrow.fs

    from gsenet.checkpoint import MANIFEST
    from gsenet.storage import open_storage_filesystem

    fs, path = open_storage_filesystem(uri)
    try:
        with fs.open_input_stream(f"{path}/{MANIFEST}") as f:
            entries = json.loads(f.read().decode())["files"]
        infos = fs.get_file_info([f"{path}/{name}" for name in entries])
    except FileNotFoundError:
        return f"{uri} is unfinished or gone: no {MANIFEST}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{uri}/{MANIFEST} is unreadable ({exc})"
    for (name, entry), info in zip(entries.items(), infos, strict=True):
        if info.type != pyarrow.fs.FileType.File:
            return f"{uri}/{name} is missing"
        if info.size != entry["bytes"]:
            return f"{uri}/{name} is truncated or partial ({info.size} bytes, {entry['bytes']} written)"
    return None


def download_stored_folder(uri: str, cache_dir: str | Path = "") -> Path:
    """gs://bucket/prefix (a checkpoint or model folder) copied into the local cache, replacing an
    older copy; read through the same filesystem Ray Train writes with (emulator-aware)."""
    import shutil

    import pyarrow.fs

    from gsenet.storage import cache_root, open_storage_filesystem, parse_gcs_uri

    bucket, prefix = parse_gcs_uri(uri)
    fs, path = open_storage_filesystem(uri)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.Directory:
        raise ModelLoadError(f"{uri}: no such folder in the bucket; give a checkpoint or model folder")
    dest = cache_root(cache_dir) / "stored" / bucket / prefix
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    pyarrow.fs.copy_files(path, str(dest), source_filesystem=fs, destination_filesystem=pyarrow.fs.LocalFileSystem())
    return dest


def load_local_model(path: str | Path) -> tuple[GSENet, ExperimentConfig | ModelConfig]:
    """(GSENet in eval mode on CPU, its config) from a local checkpoint folder, model folder, Ray
    Train run folder or downloaded MLflow model. Any other source: gsenet.load.load_model.

    A checkpoint gives the full ExperimentConfig, a model folder its ModelConfig.
    """
    folder = Path(path)
    if not folder.exists():
        raise ModelLoadError(f"{folder}: no such model; give a checkpoint folder, a model folder or an MLflow URI")
    if folder.is_file():  # model.pt or checkpoint.pt given directly
        folder = folder.parent
    if (folder / CHECKPOINT_FILE).is_file():
        return _load_checkpoint_model(folder)
    if (folder / MODEL_WEIGHTS).is_file():
        _check_versions(folder)
        cfg = _read_model_config(folder / MODEL_CONFIG)
        return _build(cfg, _torch_load(folder / MODEL_WEIGHTS), folder / MODEL_WEIGHTS), cfg
    if (folder / "MLmodel").is_file():  # a downloaded MLflow pyfunc: artifacts/model/ is a model folder
        candidates = sorted(p.parent for p in folder.glob("artifacts/*/" + MODEL_WEIGHTS))
        if candidates:
            return load_local_model(candidates[0])
    if any(folder.glob("checkpoint_*/")):  # a Ray Train run folder: its newest complete, valid checkpoint
        newest, skipped = newest_valid(folder)
        for reason in skipped:
            print(f"gsenet: skipping checkpoint: {reason}")
        if newest is None:
            raise ModelLoadError(f"{folder}: no complete, valid checkpoint ({'; '.join(skipped)})")
        return _load_checkpoint_model(newest)
    raise ModelLoadError(
        f"{folder}: neither a checkpoint folder ({CHECKPOINT_FILE}) nor a model folder "
        f"({MODEL_WEIGHTS} + {MODEL_CONFIG}) nor an MLflow model (MLmodel)"
    )


def _torch_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load ({exc}); it is corrupt or not a gsenet file") from None


def _read_model_config(path: Path) -> ModelConfig:
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing; a model folder needs {MODEL_WEIGHTS} and {MODEL_CONFIG}")
    try:
        return from_dict(yaml.safe_load(path.read_text()) or {}, ModelConfig)
    except (ConfigError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{path}: invalid model config: {exc}") from None


def _load_checkpoint_model(folder: Path) -> tuple[GSENet, ExperimentConfig]:
    """A checkpoint folder that verifies against its manifest (or has none: an older gsenet's)."""
    path = folder / CHECKPOINT_FILE
    try:
        state = read_checkpoint(folder, allow_unverified=True)
    except CorruptCheckpointError as exc:
        raise ModelLoadError(f"{folder}: not a usable checkpoint: {exc}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ModelLoadError(f"{path}: not a gsenet training checkpoint (needs 'model' and 'config')")
    try:
        cfg = from_dict(state["config"])
    except ConfigError as exc:
        raise ModelLoadError(f"{path}: checkpoint config is invalid: {exc}") from None
    return _build(cfg.model, state["model"], path), cfg


def _build(cfg: ModelConfig, state_dict: dict, path: Path) -> GSENet:
    model = GSENet(cfg)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: weights do not match the model config: {exc}") from None
    return model.eval()


def model_config_of(cfg: ExperimentConfig | ModelConfig) -> ModelConfig:
    return cfg.model if isinstance(cfg, ExperimentConfig) else cfg
