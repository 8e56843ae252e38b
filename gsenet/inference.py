"""Using a trained model: one loader for every source, enhancement (offline or streaming), export.

A *model folder* is self-contained: `model.pt` (a plain state dict, loadable with
`torch.load(weights_only=True)`) and `model.yaml` (the ModelConfig), plus `model.onnx` or
`model.ts` when exported in those formats. A *checkpoint folder* (Ray Train) holds `checkpoint.pt`
(model, optimizer, scheduler, step, config, data position) and `config.yaml`. `load_model` takes
either, an MLflow model folder, an MLflow URI (`models:/name@alias`, `runs:/<id>/best_model`), or
`pretrained:<name>`: a model folder shipped in the package (gsenet/pretrained/<name>/, with its
model card README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
PRETRAINED_PREFIX = "pretrained:"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


# ----------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------
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


def load_model(source: str | Path, tracking_uri: str = "") -> tuple[GSENet, ExperimentConfig | ModelConfig]:
    """(GSENet in eval mode on CPU, its config) from a checkpoint folder, model folder or MLflow URI.

    A checkpoint gives the full ExperimentConfig, a model folder its ModelConfig.
    """
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        return load_model(pretrained_folder(text[len(PRETRAINED_PREFIX) :]))
    if text.startswith(MLFLOW_SCHEMES):
        from gsenet.tracking import download_model

        return load_model(download_model(text, tracking_uri))
    folder = Path(text)
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
            return load_model(candidates[0])
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


# ----------------------------------------------------------------------------------------------
# Evaluation: the model against the beamformer, the raw reference mic and reference systems
# ----------------------------------------------------------------------------------------------
# Row-key suffix -> system, in table order. "" is the model; the baselines run on the beam.
SYSTEMS = {
    "": "model",
    "_beam": "beamformer",
    "_ref": "reference mic",
    "_wiener": "Wiener on beam",
    "_oracle_irm": "oracle IRM on beam",
}
METRICS = (("si_sdr", "SI-SDR"), ("pesq", "PESQ"), ("stoi", "STOI"))


def evaluate_model(
    model: GSENet,
    model_cfg: ExperimentConfig | ModelConfig,
    data_root: str | Path,
    split: str = "test",
    *,
    data_cfg=None,
    streaming: bool = False,
    perceptual: bool = True,
    max_recordings: int = 0,
    baselines: bool = True,
) -> list[dict]:
    """One row per recording: SI-SDR / PESQ-wb / STOI of the enhanced output, the beamformer output
    (`*_beam`), the reference mic (`*_ref`) and, with `baselines`, a Wiener filter on the beam
    (`*_wiener`) and the oracle ideal ratio mask on the beam (`*_oracle_irm`, the ceiling of a real
    mask); the improvements over the beamformer (`*_improvement`, `*_vs_beam<suffix>`); and the
    recording's meta.json (as `meta.<key>`) so results can be broken down by condition."""
    import json

    from gsenet import metrics as M
    from gsenet.baselines import run_baselines
    from gsenet.config import DataConfig
    from gsenet.data import RecordingDataset
    from gsenet.progress import tracked

    if data_cfg is None:
        data_cfg = model_cfg.data if isinstance(model_cfg, ExperimentConfig) else DataConfig()
    sr = model_config_of(model_cfg).sample_rate
    dataset = RecordingDataset(Path(data_root) / split, data_cfg, sr)
    rows = []
    count = len(dataset) if not max_recordings else min(max_recordings, len(dataset))
    for index in tracked(range(count), f"evaluate {split}", unit="rec"):
        item, recording = dataset[index], dataset.recordings[index]
        beam, ref, target = (item[k].numpy() for k in ("beam", "ref", "target"))
        enhanced = enhance_arrays(model, beam, ref, streaming=streaming)
        row = {"recording": item["name"], "seconds": round(len(target) / sr, 3)}
        signals = {"": enhanced, "_beam": beam, "_ref": ref}
        if baselines:
            signals.update({f"_{name}": out for name, out in run_baselines(beam, target, sr).items()})
        for suffix, signal in signals.items():
            for key, value in M.score(signal, target, sr, perceptual=perceptual).items():
                row[f"{key}{suffix}"] = value
        for key, _ in METRICS:
            if key in row:
                row[f"{key}_improvement"] = row[key] - row[f"{key}_beam"]
                for suffix in signals.keys() - {"", "_beam"}:
                    row[f"{key}_vs_beam{suffix}"] = row[f"{key}{suffix}"] - row[f"{key}_beam"]
        meta_path = Path(recording.folder) / "meta.json"
        if meta_path.is_file():
            for key, value in json.loads(meta_path.read_text()).items():
                if isinstance(value, (int, float, str, bool)):
                    row[f"meta.{key}"] = value
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    """Mean of every numeric metric column (NaNs skipped)."""
    from gsenet.metrics import nanmean

    keys = [k for k in rows[0] if not k.startswith("meta.") and k not in ("recording",)] if rows else []
    return {f"mean_{k}": nanmean(r.get(k) for r in rows) for k in keys if isinstance(rows[0][k], float)}


def format_table(rows: list[dict], summary: dict[str, float]) -> str:
    """Per-recording SI-SDR / PESQ / STOI for enhanced vs beamformer vs reference mic, the means, then
    one line per system (model, beamformer, reference mic, baselines), overall and by condition."""
    columns = list(METRICS)
    columns = [(k, t) for k, t in columns if rows and k in rows[0]]
    header = f"{'recording':<24}" + "".join(f"{t + ' ' + w:>14}" for k, t in columns for w in ("enh", "beam", "ref"))
    lines = [header, "-" * len(header)]

    def fmt(values: list) -> str:
        return "".join(f"{v:>14.3f}" for v in values)

    for row in rows:
        lines.append(
            f"{row['recording'][:24]:<24}" + fmt([row[f"{k}{s}"] for k, _ in columns for s in ("", "_beam", "_ref")])
        )
    lines.append("-" * len(header))
    lines.append(f"{'mean':<24}" + fmt([summary[f"mean_{k}{s}"] for k, _ in columns for s in ("", "_beam", "_ref")]))
    gains = ", ".join(f"{t} {summary[f'mean_{k}_improvement']:+.3f}" for k, t in columns)
    lines.append(f"improvement over the beamformer: {gains}")
    lines += ["", system_table(rows, "all recordings")]
    conditions = sorted({r["meta.condition"] for r in rows if isinstance(r.get("meta.condition"), str)})
    for condition in conditions if len(conditions) > 1 else []:
        lines += ["", system_table([r for r in rows if r.get("meta.condition") == condition], condition)]
    return "\n".join(lines)


def system_table(rows: list[dict], title: str) -> str:
    """One line per system present in `rows`: mean SI-SDR, SI-SDR over the beamformer, PESQ, STOI."""
    from gsenet.metrics import nanmean

    keys = [k for k, _ in METRICS if rows and k in rows[0]]
    lines = [f"{title} ({len(rows)} recordings)", f"{'system':<22}{'SI-SDR':>9}{'vs beam':>9}{'PESQ':>7}{'STOI':>7}"]
    for suffix, name in SYSTEMS.items():
        if not rows or f"si_sdr{suffix}" not in rows[0]:
            continue
        means = {k: nanmean(r[f"{k}{suffix}"] for r in rows) for k in keys}
        gain = nanmean(r[f"si_sdr{suffix}"] - r["si_sdr_beam"] for r in rows)
        perceptual = "".join(f"{means[k]:>7.2f}" if k in means else f"{'-':>7}" for k in ("pesq", "stoi"))
        lines.append(f"{name:<22}{means['si_sdr']:>9.2f}{gain:>+9.2f}{perceptual}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------
EXPORT_FORMATS = ("onnx", "torchscript")


class FrameGrid(torch.nn.Module):
    """Zero-pads the end so the STFT frame count is a multiple of the model's total time stride,
    runs the model and trims: exactly the model's output (it is causal), but no shape-dependent
    trimming is left inside, so a traced/exported graph is valid for every length."""

    def __init__(self, model: GSENet):
        super().__init__()
        self.model = model
        self.frames_multiple = 2 ** sum(s == 2 for s in model.cfg.time_strides)
        self.extra_frames = model.cfg.n_fft // model.cfg.hop - 1  # frames past the signal's end

    def forward(self, beam: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        hop, length = self.model.cfg.hop, beam.shape[-1]
        frames = (length + hop - 1) // hop
        frames = frames + (-(frames + self.extra_frames)) % self.frames_multiple
        pad = frames * hop - length
        pad_end = torch.nn.functional.pad
        return self.model(pad_end(beam, (0, pad)), pad_end(ref, (0, pad)))[:, :length]


def export_model(model: GSENet, model_cfg: ModelConfig, out: str | Path, fmt: str = "onnx") -> Path:
    """A self-contained model folder (model.pt + model.yaml) plus model.onnx or model.ts.

    Inputs "beam" and "ref" are float32 [batch, time] and the output "enhanced" has the same
    shape; batch and time are dynamic. Returns the exported file.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    out = save_model_folder(model.state_dict(), model_cfg, out)
    model = FrameGrid(model.eval().cpu()).eval()
    # Two distinct tensors: the exporter would merge one tensor passed twice into a single input.
    beam, ref = torch.randn(2, 1, model_cfg.sample_rate // 2) * 0.1
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, (beam, ref), check_trace=False)
        traced.save(str(out / "model.ts"))
        return out / "model.ts"
    import warnings

    dims = {0: "batch", 1: "time"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (beam, ref),
            input_names=["beam", "ref"],
            output_names=["enhanced"],
            dynamic_axes={"beam": dims, "ref": dims, "enhanced": dims},
            dynamo=True,
            verbose=False,
        )
    program.save(str(out / "model.onnx"))
    return out / "model.onnx"


def check_export(model: GSENet, path: str | Path, seconds: float = 1.3, batch: int = 2) -> dict:
    """Max abs difference between an exported model and PyTorch, and the export's real-time factor."""
    import time

    path = Path(path)
    sr = model.cfg.sample_rate
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, int(seconds * sr), generator=generator) * 0.1
    y = torch.randn(batch, int(seconds * sr), generator=generator) * 0.1
    with torch.no_grad():
        expected = model.eval()(x, y).numpy()
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run() -> np.ndarray:
            return session.run(None, {"beam": x.numpy(), "ref": y.numpy()})[0]

        runtime = "onnxruntime"
    else:
        scripted = torch.jit.load(str(path))

        def run() -> np.ndarray:
            with torch.no_grad():
                return scripted(x, y).numpy()

        runtime = "torchscript"
    got = run()
    start = time.perf_counter()
    run()
    rtf = (time.perf_counter() - start) / (batch * seconds)
    return {"max_abs_error": float(np.abs(got - expected).max()), "rtf": rtf, "runtime": runtime, "samples": x.shape[1]}
