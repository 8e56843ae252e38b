"""Using a trained model: one loader for every source, enhancement (offline or streaming), export.

A *model folder* is self-contained: `model.pt` (a plain state dict, loadable with
`torch.load(weights_only=True)`) and `model.yaml` (the ModelConfig), plus `model.onnx` or
`model.ts` when exported in those formats. A *checkpoint folder* (Ray Train) holds `checkpoint.pt`
(model, optimizer, scheduler, step, config, data position) and `config.yaml`. `load_model` takes
either, an MLflow model folder, or an MLflow URI (`models:/name@alias`, `runs:/<id>/best_model`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from gsenet.config import ConfigError, ExperimentConfig, ModelConfig, from_dict, to_dict
from gsenet.errors import ModelLoadError
from gsenet.model import GSENet

MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "model.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


# ----------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------
def save_model_folder(state_dict: dict, model_cfg: ModelConfig, out: str | Path) -> Path:
    """Write a self-contained model folder: model.pt (state dict) + model.yaml (ModelConfig)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    torch.save(state, out / MODEL_WEIGHTS)
    (out / MODEL_CONFIG).write_text(yaml.safe_dump(to_dict(model_cfg), sort_keys=False))
    return out


def load_model(source: str | Path, tracking_uri: str = "") -> tuple[GSENet, ExperimentConfig | ModelConfig]:
    """(GSENet in eval mode on CPU, its config) from a checkpoint folder, model folder or MLflow URI.

    A checkpoint gives the full ExperimentConfig, a model folder its ModelConfig.
    """
    text = str(source)
    if text.startswith(MLFLOW_SCHEMES):
        from gsenet.tracking import download_model

        return load_model(download_model(text, tracking_uri))
    folder = Path(text)
    if not folder.exists():
        raise ModelLoadError(f"{folder}: no such model; give a checkpoint folder, a model folder or an MLflow URI")
    if folder.is_file():  # model.pt or checkpoint.pt given directly
        folder = folder.parent
    if (folder / CHECKPOINT_FILE).is_file():
        return _load_checkpoint_model(folder / CHECKPOINT_FILE)
    if (folder / MODEL_WEIGHTS).is_file():
        cfg = _read_model_config(folder / MODEL_CONFIG)
        return _build(cfg, _torch_load(folder / MODEL_WEIGHTS), folder / MODEL_WEIGHTS), cfg
    if (folder / "MLmodel").is_file():  # a downloaded MLflow pyfunc: artifacts/model/ is a model folder
        candidates = sorted(p.parent for p in folder.glob("artifacts/*/" + MODEL_WEIGHTS))
        if candidates:
            return load_model(candidates[0])
    checkpoints = sorted(folder.glob("checkpoint_*/" + CHECKPOINT_FILE))
    if checkpoints:  # a Ray Train run folder: its newest checkpoint
        return _load_checkpoint_model(checkpoints[-1])
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


def _load_checkpoint_model(path: Path) -> tuple[GSENet, ExperimentConfig]:
    state = _torch_load(path)
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


# ----------------------------------------------------------------------------------------------
# Enhancement
# ----------------------------------------------------------------------------------------------
@torch.inference_mode()
def enhance_tensor(model: GSENet, beam: torch.Tensor, ref: torch.Tensor, *, streaming: bool = False) -> torch.Tensor:
    """(B, L) beam + ref -> (B, L) enhanced, offline or through the causal streamer (same result)."""
    if not streaming:
        return model(beam, ref)
    hop, length = model.cfg.hop, beam.shape[-1]
    padded = -(-length // hop) * hop
    beam = torch.nn.functional.pad(beam, (0, padded - length))
    ref = torch.nn.functional.pad(ref, (0, padded - length))
    streamer = model.streamer(batch_size=beam.shape[0])
    outputs = [streamer.step(beam[:, i : i + hop], ref[:, i : i + hop]) for i in range(0, padded, hop)]
    outputs.append(streamer.flush())
    latency = model.latency_samples
    return torch.cat(outputs, dim=-1)[:, latency : latency + length]


def enhance_arrays(model: GSENet, beam: np.ndarray, ref: np.ndarray, *, streaming: bool = False) -> np.ndarray:
    """numpy in, numpy out: [L] or [B, L] float32."""
    beam, ref = np.asarray(beam, np.float32), np.asarray(ref, np.float32)
    if beam.shape != ref.shape or beam.ndim not in (1, 2):
        raise ValueError(f"beam and ref must have equal shape [L] or [B, L], got {beam.shape} and {ref.shape}")
    squeeze = beam.ndim == 1
    b, r = torch.from_numpy(np.atleast_2d(beam)), torch.from_numpy(np.atleast_2d(ref))
    device = next(model.parameters()).device
    out = enhance_tensor(model, b.to(device), r.to(device), streaming=streaming).float().cpu().numpy()
    return out[0] if squeeze else out
