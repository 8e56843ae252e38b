"""The one typed config that drives everything.

`ExperimentConfig` gathers the model, loss, data, optimiser and training settings. The CLI's
`key=value` overrides, the YAML files, the search spaces and the MLflow params are all views
of it: dotted paths such as `model.dilation_depth` or `loss.si_sdr`. Validation lives here so
that every entry point gets the same errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsenet.errors import GSENetError

SPLITS = ("train", "val", "test")  # the dataset layout's folders (see gsenet/data.py)


class ConfigError(GSENetError, ValueError):
    """A config value, file or override is invalid; the message says which and how to fix it."""


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
INPUT_MODES = ("beam+ref", "beam", "ref")
OUTPUT_MODES = ("residual_mask", "mask", "mapping")


@dataclass
class ModelConfig:
    """GSENet (Yang et al., ICASSP 2023): a causal U-Net over the STFT of two signals."""

    sample_rate: int = 16000  # Hz; the model's only rate (data is resampled to it)
    n_fft: int = 320  # 20 ms window at 16 kHz
    hop: int = 160  # 10 ms hop; n_fft must be a multiple of hop
    # Which signals feed the network: beamformer + reference mic (GSENet), beamformer only
    # (the paper's SSENet baseline) or reference mic only.
    inputs: str = "beam+ref"
    # Widths: input conv, then the output of each of the 5 encoder blocks (bottleneck = last).
    widths: tuple[int, ...] = (16, 32, 48, 48, 96, 96)
    width_multiplier: float = 1.0  # scales every width (sweeps search "channel widths")
    freq_stride: int = 2  # frequency downsampling in every encoder block
    time_strides: tuple[int, ...] = (1, 2, 1, 1, 1)  # time downsampling per encoder block
    dilation_depth: int = 2  # dilated convs per time-dilated block: dilations 3^1..3^depth
    encoder_tdb: tuple[bool, ...] = (False, False, True, True, True)  # TDB in encoder block i
    decoder_tdb: tuple[bool, ...] = (False, False, False, False, False)  # TDB in decoder block i
    skip_connection: str = "concat"  # join encoder skips: "concat" (U-Net) or "add" (~17% fewer MACs)
    negative_slope: float = 0.3  # LeakyReLU slope
    # "residual_mask": complex mask 1 + net on the beam, the net's last conv starting at zero, so an
    # untrained model passes the beam through (training starts at the beamformer, not 31 dB below);
    # "mask": complex mask = net on the beam; "mapping": the net outputs the spectrum itself.
    output_mode: str = "residual_mask"
    compress_exponent: float = 1.0  # power-law magnitude compression of inputs (1 = off)
    lookahead_frames: int = 0  # future STFT frames the network may see (0 = causal)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def in_channels(self) -> int:
        return 4 if self.inputs == "beam+ref" else 2

    @property
    def effective_widths(self) -> tuple[int, ...]:
        return tuple(max(1, round(w * self.width_multiplier)) for w in self.widths)

    def validate(self) -> None:
        _check(self.sample_rate > 0, "model.sample_rate", "must be positive")
        _check(self.hop > 0 and self.n_fft > 0, "model.n_fft/hop", "must be positive")
        _check(self.n_fft % self.hop == 0, "model.n_fft", f"({self.n_fft}) must be a multiple of hop ({self.hop})")
        _check(self.inputs in INPUT_MODES, "model.inputs", f"must be one of {INPUT_MODES}, got {self.inputs!r}")
        _check(self.output_mode in OUTPUT_MODES, "model.output_mode", f"must be one of {OUTPUT_MODES}")
        _check(self.skip_connection in ("concat", "add"), "model.skip_connection", "must be 'concat' or 'add'")
        _check(len(self.widths) == 6, "model.widths", f"needs 6 values (input conv + 5 blocks), got {len(self.widths)}")
        _check(all(w > 0 for w in self.widths), "model.widths", "must all be positive")
        _check(self.width_multiplier > 0, "model.width_multiplier", "must be positive")
        for name in ("time_strides", "encoder_tdb", "decoder_tdb"):
            n = len(getattr(self, name))
            _check(n == 5, f"model.{name}", f"needs 5 values (one per encoder block), got {n}")
        _check(all(s in (1, 2) for s in self.time_strides), "model.time_strides", "values must be 1 or 2")
        _check(self.freq_stride in (1, 2), "model.freq_stride", "must be 1 or 2")
        _check(0 <= self.dilation_depth <= 6, "model.dilation_depth", "must be in 0..6")
        _check(0 <= self.lookahead_frames <= 3, "model.lookahead_frames", "must be in 0..3")
        _check(0 < self.compress_exponent <= 1, "model.compress_exponent", "must be in (0, 1]")


# ----------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------
def loss_term(weight: float) -> Any:
    """A LossConfig field that is the weight of a loss term of the same name. The loss-term registry
    is these fields: LOSS_TERMS lists them; gsenet.losses.TERM_FUNCTIONS computes each by name;
    training reports each as val_loss_<name>; search spaces may search loss.<name>."""
    return field(default=weight, metadata={"loss_term": True})


@dataclass
class LossConfig:
    """Named, weighted loss terms; a term with weight 0 is never computed."""

    multires_stft: float = loss_term(1.0)  # spectral convergence + log-magnitude L1 over resolutions
    compressed_spectral: float = loss_term(1.0)  # power-law compressed complex spectral MSE
    # negative SI-SDR (dB / 10): 0.1 per dB, on the scale of a few dB's change in the spectral terms
    # (tests/test_losses.py: with these weights the total ranks a fixed set of outputs like the metrics)
    si_sdr: float = loss_term(1.0)
    # (n_fft, hop) pairs of the multi-resolution STFT loss.
    stft_resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))
    compress_exponent: float = 0.3  # power-law exponent of the compressed spectral loss
    compressed_magnitude_weight: float = 0.7  # share of the magnitude term vs the complex term
    # Log-magnitude floor of the multi-resolution term, in dB relative to the target's peak bin.
    log_floor_db: float = -40.0
    # Spectral terms compare the estimate scaled as SI-SDR scales it (a scaled copy is perfect).
    scale_invariant: bool = True

    def weights(self) -> dict[str, float]:
        """{term: weight} for every loss term, in LOSS_TERMS order (0 = not computed)."""
        return {name: getattr(self, name) for name in LOSS_TERMS}

    def active_terms(self) -> list[str]:
        """The terms with a weight > 0: those GSENetLoss computes and validation reports."""
        return [name for name, weight in self.weights().items() if weight > 0]

    def validate(self) -> None:
        for name, weight in self.weights().items():
            _check(weight >= 0, f"loss.{name}", "weights must be >= 0")
        _check(sum(self.weights().values()) > 0, "loss", "at least one weight must be > 0")
        _check(len(self.stft_resolutions) > 0, "loss.stft_resolutions", "needs at least one (n_fft, hop)")
        for res in self.stft_resolutions:
            _check(len(res) == 2 and res[0] >= res[1] > 0, "loss.stft_resolutions", f"bad (n_fft, hop) {res}")
        _check(0 < self.compress_exponent <= 1, "loss.compress_exponent", "must be in (0, 1]")
        _check(0 <= self.compressed_magnitude_weight <= 1, "loss.compressed_magnitude_weight", "must be in [0, 1]")
        _check(-120 <= self.log_floor_db <= 0, "loss.log_floor_db", "must be in [-120, 0] dB")


LOSS_TERMS = tuple(f.name for f in dataclasses.fields(LossConfig) if f.metadata.get("loss_term"))


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
LENGTH_POLICIES = ("error", "trim")
ALIGN_MODES = ("off", "auto")


@dataclass
class DataConfig:
    """Where recordings are and how they are cut into training examples."""

    path: str = ""  # dataset root (local folder or gs://bucket/prefix) holding train/ val/ test/
    beam_channel: str = "channel_1.wav"  # beamformer output
    ref_channel: str = "channel_2.wav"  # raw reference microphone
    target_file: str = "ground_truth.wav"  # clean target
    segment_seconds: float = 2.0  # training segment length
    batch_size: int = 8
    num_workers: int = 0  # DataLoader workers per training worker
    # What to do when channels of one recording differ in length: "error" (default) or "trim"
    # to the shortest (logged); never silent.
    length_policy: str = "error"
    skip_bad_recordings: bool = False  # skip (and list) recordings that fail the checks
    # "auto": measure each recording's beam-to-reference delay (as `gsenet data align`) and read
    # every file shifted and cut to the common length; "off" reads the files as they are.
    align: str = "off"
    align_tolerance_ms: float = 2.0  # data.align=auto refuses a recording whose delay varies more
    max_delay_ms: float = 20.0  # linter warns when beam lags/leads the reference by more
    cache_dir: str = ""  # local cache for gs:// data and resampled files ("" = ~/.cache/gsenet)
    gcs_timeout_s: float = 60.0  # give up on an unreachable/failing gs:// endpoint after this (retries included)
    val_max_recordings: int = 0  # cap on validation recordings per epoch (0 = all)

    def validate(self) -> None:
        _check(self.segment_seconds > 0, "data.segment_seconds", "must be positive")
        _check(self.batch_size > 0, "data.batch_size", "must be positive")
        _check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        _check(self.length_policy in LENGTH_POLICIES, "data.length_policy", f"must be one of {LENGTH_POLICIES}")
        _check(self.beam_channel != self.ref_channel, "data.ref_channel", "must differ from data.beam_channel")
        _check(self.gcs_timeout_s > 0, "data.gcs_timeout_s", "must be positive")
        _check(self.align in ALIGN_MODES, "data.align", f"must be one of {ALIGN_MODES}")
        _check(self.align_tolerance_ms >= 0, "data.align_tolerance_ms", "must be >= 0")


# ----------------------------------------------------------------------------------------------
# Optimisation and training
# ----------------------------------------------------------------------------------------------
@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200  # linear warm-up from 0
    schedule: str = "cosine"  # "cosine" decay to min_lr_ratio * lr, or "constant"
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0  # max gradient norm (0 = off)

    def validate(self) -> None:
        _check(self.lr > 0, "optim.lr", "must be positive")
        _check(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
        _check(self.schedule in ("cosine", "constant"), "optim.schedule", "must be 'cosine' or 'constant'")
        _check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", "must be in [0, 1]")
        _check(self.grad_clip >= 0, "optim.grad_clip", "must be >= 0")


# Metrics every training epoch reports (gsenet.train.validate), with the direction that is better.
# Loss terms are reported as val_loss_<term>; these are the measured qualities and losses.
METRIC_MODES = {
    "val_loss": "min",
    "train_loss": "min",
    "val_si_sdr": "max",
    "val_si_sdr_improvement": "max",
    "val_pesq": "max",
    "val_stoi": "max",
}


@dataclass
class TrainConfig:
    epochs: int = 20
    steps_per_epoch: int = 200  # epoch length, so short trials still report often
    seed: int = 0
    num_workers: int = 1  # Ray Train workers (DDP ranks)
    gpus_per_worker: float = 0.0  # 0 = CPU
    # The Ray resource gpus_per_worker asks for ("" = GPU). Naming a custom resource instead makes
    # the workers train on CPU there: the fake autoscaler's stand-in GPU nodes (cluster/fake_autoscaler.py).
    gpu_resource: str = ""
    cpus_per_worker: float = 1.0
    precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU), "bf16" or "fp32"
    compile: bool = False  # torch.compile the model (GPU)
    # glibc keeps freed memory for the next step instead of handing every block over 32 MB back
    # to the OS (gsenet.runtime.reuse_freed_memory): fp32 steps at 1024/256 4.46 -> 3.05 s on a 2-core
    # AMD VM (README, Model speed), for ~17% more peak memory. No effect outside glibc (macOS, musl).
    reuse_freed_memory: bool = True
    keep_checkpoints: int = 2  # best k by checkpoint_metric (the latest one is always kept too)
    checkpoint_metric: str = "val_si_sdr"  # what "best" means: kept checkpoints, best_model, registration
    checkpoint_mode: str = ""  # "max" or "min" ("" = the metric's natural direction, METRIC_MODES)
    max_failures: int = 2  # worker-group restarts from the latest checkpoint
    storage_path: str = ""  # Ray Train results ("" = ./gsenet_runs; gs://... on clusters)
    name: str = ""  # run name ("" = derived from the config)
    metric_subset: int = 4  # validation recordings scored with PESQ/STOI and logged as audio
    log_every: int = 20  # print loss, lr and seconds of audio trained per second every N steps (rank 0)
    preemption_check_every: int = 10  # ask Ray whether a node is being preempted every N steps (0 = never)
    # Also checkpoint every N steps inside an epoch (0 = at epoch ends only): long epochs lose at
    # most N steps to a crashed worker; the report repeats the last epoch's validation (as preemption's).
    checkpoint_every: int = 0
    # Audit trail: each rank appends what it trains (sample names per step) and reports (with or
    # without a checkpoint) to <trace_dir>/rank<r>.jsonl, a folder on that rank's node ("" = off).
    trace_dir: str = ""

    def validate(self) -> None:
        _check(self.epochs > 0 and self.steps_per_epoch > 0, "train.epochs", "epochs and steps must be positive")
        _check(self.num_workers > 0, "train.num_workers", "must be positive")
        _check(self.gpus_per_worker >= 0, "train.gpus_per_worker", "must be >= 0")
        _check(self.precision in ("auto", "bf16", "fp32"), "train.precision", "must be auto, bf16 or fp32")
        _check(self.log_every > 0, "train.log_every", "must be positive")
        _check(self.preemption_check_every >= 0, "train.preemption_check_every", "must be >= 0")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every", "must be >= 0")
        _check(self.keep_checkpoints > 0, "train.keep_checkpoints", "must be positive")
        _check(
            self.checkpoint_metric in METRIC_MODES,
            "train.checkpoint_metric",
            f"must be one of {sorted(METRIC_MODES)}, got {self.checkpoint_metric!r}",
        )
        _check(self.checkpoint_mode in ("", "min", "max"), "train.checkpoint_mode", "must be '', 'min' or 'max'")

    def resolved_checkpoint_mode(self) -> str:
        return self.checkpoint_mode or METRIC_MODES[self.checkpoint_metric]


@dataclass
class TrackingConfig:
    mlflow_uri: str = ""  # "" = $MLFLOW_TRACKING_URI or sqlite:///mlruns.db in the working folder
    experiment: str = "gsenet"
    register_model: str = ""  # Model Registry name for the best model ("" = do not register)


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def validate(self) -> ExperimentConfig:
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "validate"):
                section.validate()
        return self


# ----------------------------------------------------------------------------------------------
# Views: dict / YAML / dotted overrides / flat params
# ----------------------------------------------------------------------------------------------
def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-safe dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def flatten(cfg: Any) -> dict[str, Any]:
    """{"model.widths": [...], "loss.si_sdr": 0.0, ...}: the MLflow params view."""
    out: dict[str, Any] = {}
    for section, values in to_dict(cfg).items():
        if isinstance(values, dict):
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        else:
            out[section] = values
    return out


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the dataclass field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(annotation, value, key)
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if annotation is float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key(s) {[where + u for u in unknown]}; valid keys: {sorted(names)}")
    kwargs = {name: _coerce(v, hints[name], f"{prefix}.{name}" if prefix else name) for name, v in values.items()}
    return cls(**kwargs)


def from_dict(values: dict[str, Any] | None, cls: type = ExperimentConfig) -> Any:
    """Build (and validate) a config from a nested dict; unknown keys are errors."""
    cfg = _build(cls, values or {})
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def parse_value(text: str) -> Any:
    """A CLI override's value: YAML syntax, so `[8,16]`, `0.5`, `true` and `mask` all work."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse override value {text!r}: {exc}") from None


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, Any] | list[str]) -> ExperimentConfig:
    """Apply dotted overrides ({"model.dilation_depth": 3} or ["model.dilation_depth=3"])."""
    if isinstance(overrides, list):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value, e.g. loss.si_sdr=0.5")
            key, _, text = item.partition("=")
            pairs[key.strip()] = parse_value(text)
        overrides = pairs
    nested = to_dict(cfg)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in nested or not isinstance(nested[section], dict) or not name:
            raise ConfigError(f"unknown config key {key!r}; sections are {sorted(nested)} (e.g. model.widths)")
        if name not in nested[section]:
            raise ConfigError(f"unknown config key {key!r}; valid keys in {section}: {sorted(nested[section])}")
        nested[section][name] = list(value) if isinstance(value, tuple) else value
    return from_dict(nested)


def load_yaml(path: str | Path) -> ExperimentConfig:
    """Read a YAML config file; errors name the file and the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model:, loss:, ...), got {type(values).__name__}")
    try:
        return from_dict(values or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_yaml(cfg: Any) -> str:
    import yaml

    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def best_metric_name(metric: str) -> str:
    """The per-epoch metric holding the best `metric` so far (e.g. best_val_si_sdr): what a sweep
    ranks a trial by, logged by gsenet.train and shown by the sweep's MLflow view."""
    return f"best_{metric}"
