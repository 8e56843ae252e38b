"""Search spaces: YAML files of distributions keyed by dotted paths of `ExperimentConfig`.

A space file (see `search/spaces/default.yaml`) has four sections:

    base: ../../gsenet/configs/quality.yaml  # optional base config file, relative to the space file
    fixed:                               # dotted overrides applied to every trial
      train.epochs: 12
    sweep:                               # defaults for the sweep settings (CLI flags win)
      num_samples: 32
    parameters:                          # what is searched, in sampling order
      model.width_multiplier: {type: choice, values: [0.5, 0.75, 1.0]}
      model.dilation_depth:   {type: int, low: 1, high: 4}
      optim.lr:               {type: loguniform, low: 1.0e-4, high: 3.0e-3}
      loss.compress_exponent: {type: uniform, low: 0.2, high: 0.5, when: {loss.compressed_spectral: [0.5, 1.0]}}

`when` makes a parameter conditional: it is sampled only when an earlier parameter took one of
the listed values (otherwise the trial keeps the base/fixed value). The whole file is checked
when it is loaded, before Ray starts: unknown keys, wrong types, empty ranges, and every value a
parameter can take is applied to the config so its own validation runs too.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsenet.config import LOSS_TERMS, METRIC_MODES, ConfigError, ExperimentConfig, apply_overrides, load_yaml

PARAM_TYPES = ("choice", "int", "uniform", "loguniform")
SPACES_DIR = Path(__file__).parent / "spaces"
# Keys a sweep controls itself; searching them would break ASHA's epoch budget or trial naming.
NOT_SEARCHABLE = (
    "train.epochs",
    "train.name",
    "train.storage_path",
    "train.checkpoint_metric",  # set to the sweep's metric in every trial
    "train.checkpoint_mode",
    "data.path",
    "tracking.mlflow_uri",
)


class SpaceError(ConfigError):
    """A search-space file is invalid; the message names the file, the key and the fix."""


@dataclass
class SweepSettings:
    """How a sweep runs. Defaults here < the space file's `sweep:` section < CLI flags."""

    metric: str = "val_si_sdr"  # any metric of METRIC_MODES; the true SI-SDR ranks trials whatever the loss weights
    mode: str = ""  # "min" or "max" ("" = the metric's natural direction)
    num_samples: int = 16  # trials in total (a resumed sweep keeps this total)
    max_concurrent: int = 2  # trials running at once
    # Scheduler and searcher defaults won on the multi-fidelity benchmarks (README, "Sweeps"):
    # an earlier first rung ranks configs little better than chance there, and a second
    # HyperBand bracket (first cut at grace x rf) hedges against misleading early epochs.
    grace_period: int = 4  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: int = 3  # ASHA: keep the top 1/reduction_factor at each rung
    brackets: int = 2  # ASHA brackets (> 1 = asynchronous HyperBand: later first rungs too)
    scheduler: str = "asha"  # "asha" or "fifo" (no early stopping)
    searcher: str = "tpe"  # "tpe" (Optuna TPE, multivariate) or "random" (Optuna RandomSampler)
    n_startup_trials: int = 4  # TPE: random trials before the model kicks in (few: ASHA trials are cheap)
    seed: int = 0  # sampler seed
    time_budget_h: float = 0.0  # stop the sweep after this many hours (0 = no limit)
    register_model: str = "gsenet-best"  # Model Registry name of the best trial's model ("" = skip)

    def resolved_mode(self) -> str:
        return self.mode or METRIC_MODES.get(self.metric, "min")

    def validate(self, where: str = "sweep settings") -> SweepSettings:
        def check(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise SpaceError(f"{where}: sweep.{key} {message}")

        check(self.metric in METRIC_MODES, "metric", f"must be one of {sorted(METRIC_MODES)}, got {self.metric!r}")
        check(self.mode in ("", "min", "max"), "mode", f"must be 'min' or 'max', got {self.mode!r}")
        check(self.num_samples > 0, "num_samples", "must be positive")
        check(self.max_concurrent > 0, "max_concurrent", "must be positive")
        check(self.grace_period > 0, "grace_period", "must be positive (epochs)")
        check(self.reduction_factor >= 2, "reduction_factor", "must be >= 2")
        check(self.brackets >= 1, "brackets", "must be >= 1 (1 = plain ASHA)")
        check(self.scheduler in ("asha", "fifo"), "scheduler", f"must be 'asha' or 'fifo', got {self.scheduler!r}")
        check(self.searcher in ("tpe", "random"), "searcher", f"must be 'tpe' or 'random', got {self.searcher!r}")
        check(self.n_startup_trials >= 0, "n_startup_trials", "must be >= 0")
        check(self.time_budget_h >= 0, "time_budget_h", "must be >= 0 (0 = no limit)")
        return self


@dataclass(frozen=True)
class Param:
    """One searched config field: a distribution over the values of a dotted config key."""

    key: str  # dotted config path, e.g. "model.dilation_depth"
    type: str  # one of PARAM_TYPES
    values: tuple = ()  # choice: the candidates (lists allowed, e.g. per-stage widths)
    low: float | None = None  # int/uniform/loguniform: inclusive bounds
    high: float | None = None
    step: float | None = None  # int/uniform: grid step (optional)
    log: bool = False  # int: sample on a log scale
    when: tuple[tuple[str, tuple], ...] = ()  # ((parent key, allowed values), ...): all must hold

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(parent in chosen and _freeze(chosen[parent]) in allowed for parent, allowed in self.when)

    def sample(self, trial: Any) -> Any:
        """Ask an Optuna trial (or Ray's define-by-run captor) for a value; returns the config value."""
        if self.type == "choice":
            encoded = [_encode(v) for v in self.values]
            return _decode(trial.suggest_categorical(self.key, encoded))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.type == "uniform":
            return trial.suggest_float(self.key, self.low, self.high, step=self.step)
        return trial.suggest_float(self.key, self.low, self.high, log=True)

    def extremes(self) -> list[Any]:
        """Values checked against the config before a sweep starts."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


@dataclass
class SearchSpace:
    """A parsed, validated space file. Callable as an Optuna define-by-run space."""

    parameters: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    base_config: str = ""  # resolved path of the base config YAML ("" = defaults)
    sweep: dict[str, Any] = field(default_factory=dict)  # the file's `sweep:` section
    source: str = ""  # the file it came from (for messages)
    text: str = ""  # the file's text, logged with the sweep

    def sample(self, trial: Any) -> dict[str, Any]:
        """Sample every active parameter in file order: {dotted key: config value}."""
        chosen: dict[str, Any] = {}
        for param in self.parameters:
            if param.active(chosen):
                chosen[param.key] = param.sample(trial)
        return chosen

    def __call__(self, trial: Any) -> dict[str, Any]:
        # Ray's OptunaSearch calls this with its captor; returned values override the captured
        # (JSON-encoded) choices, so trials see real lists.
        return self.sample(trial)

    def base(self) -> ExperimentConfig:
        cfg = load_yaml(self.base_config) if self.base_config else ExperimentConfig()
        return apply_overrides(cfg, self.fixed) if self.fixed else cfg

    def trial_config(self, params: dict[str, Any], extra: dict[str, Any] | None = None) -> ExperimentConfig:
        """The full config of one trial: base < fixed < extra (CLI) < sampled params."""
        return apply_overrides(self.base(), {**(extra or {}), **params})

    def settings(self, **overrides: Any) -> SweepSettings:
        """SweepSettings from the file's `sweep:` section, then non-None keyword overrides."""
        values = {**self.sweep, **{k: v for k, v in overrides.items() if v is not None}}
        return SweepSettings(**values).validate(self.source or "sweep settings")

    def warnings(self, settings: SweepSettings) -> list[str]:
        """Legal but probably unintended choices, printed before the sweep starts."""
        weights = [p.key for p in self.parameters if p.key in {f"loss.{term}" for term in LOSS_TERMS}]
        if settings.metric in ("val_loss", "train_loss") and weights:
            return [
                f"{self.source}: the metric {settings.metric} is a weighted sum whose weights ({', '.join(weights)}) "
                "are searched, so trials are partly ranked by their weights; consider --metric val_si_sdr"
            ]
        return []

    def trial_label(self, trial_id: str, params: dict[str, Any]) -> str:
        """A short run name that says what differs, e.g. `t03 w0.75 d3 si0.4` (the MLflow UI cuts
        long names off). A choice of lists shows its index in the space file (`ws1`)."""
        number = trial_id.rsplit("_", 1)[-1]
        parts = [f"t{int(number):02d}" if number.isdigit() else trial_id]
        for param in self.parameters:
            if param.key in params:
                value = params[param.key]
                if isinstance(value, (list, tuple)) and param.type == "choice":
                    value = [_freeze(v) for v in param.values].index(_freeze(value))
                parts.append(f"{short_name(param.key)}{_short_value(value)}")
        return " ".join(parts)

    def with_fixed(self, extra: dict[str, Any]) -> SearchSpace:
        """A copy with more fixed overrides (CLI flags such as --workers-per-trial), re-validated."""
        searched = {p.key for p in self.parameters}
        clash = sorted(searched & set(extra))
        if clash:
            raise SpaceError(f"{self.source}: {clash} are searched by the space and also set on the command line")
        space = dataclasses.replace(self, fixed={**self.fixed, **extra})
        _check_against_config(space, f"{self.source} (with the command-line settings)")
        return space


# Short names of the searched keys in run names; others get the initials of their last part.
SHORT_NAMES = {
    "model.widths": "ws",
    "model.width_multiplier": "w",
    "model.dilation_depth": "d",
    "model.skip_connection": "",  # its values (concat / add) say it
    "loss.si_sdr": "si",
    "loss.multires_stft": "stft",
    "loss.compressed_spectral": "cs",
    "loss.compress_exponent": "cx",
    "optim.lr": "lr",
}


def short_name(key: str) -> str:
    if key in SHORT_NAMES:
        return SHORT_NAMES[key]
    return "".join(part[:1] for part in key.rsplit(".", 1)[-1].split("_"))


def _short_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.2g}"
    if isinstance(value, (list, tuple)):
        return "-".join(_short_value(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------
def resolve_space_path(name_or_path: str | Path) -> Path:
    """`default`, `smoke` (files in search/spaces/) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = SPACES_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    names = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
    raise SpaceError(f"search space {str(name_or_path)!r} not found: give a YAML file or one of {names}")


def load_space(name_or_path: str | Path) -> SearchSpace:
    import yaml

    path = resolve_space_path(name_or_path)
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML: {exc}") from None
    return parse_space(raw, source=str(path), text=text, relative_to=path.parent)


def parse_space(raw: Any, source: str = "<space>", text: str = "", relative_to: Path | None = None) -> SearchSpace:
    """Parse and validate a space from its YAML mapping; raises SpaceError naming `source`."""
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: expected a mapping with a `parameters:` section")
    unknown = sorted(set(raw) - {"base", "fixed", "sweep", "parameters", "description"})
    if unknown:
        raise SpaceError(f"{source}: unknown section(s) {unknown}; use base, fixed, sweep, parameters, description")
    base = raw.get("base") or ""
    if base:
        base_path = (relative_to or Path.cwd()) / base
        if not base_path.is_file():
            raise SpaceError(f"{source}: base config {base_path} does not exist (paths are relative to the space)")
        base = str(base_path.resolve())
    fixed = _mapping(raw.get("fixed"), "fixed", source)
    sweep = _mapping(raw.get("sweep"), "sweep", source)
    known = {f.name for f in dataclasses.fields(SweepSettings)}
    bad = sorted(set(sweep) - known)
    if bad:
        raise SpaceError(f"{source}: unknown sweep setting(s) {bad}; valid: {sorted(known)}")
    params_raw = _mapping(raw.get("parameters"), "parameters", source)
    if not params_raw:
        raise SpaceError(f"{source}: `parameters:` is empty; a sweep needs at least one searched key")
    params: list[Param] = []
    for key, spec in params_raw.items():
        params.append(_parse_param(str(key), spec, params, source))
    space = SearchSpace(tuple(params), fixed, base, sweep, source, text)
    space.settings()  # validates the sweep section
    _check_against_config(space, source)
    return space


def _mapping(value: Any, section: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpaceError(f"{source}: `{section}:` must be a mapping, got {type(value).__name__}")
    return dict(value)


def _field_type(key: str, source: str) -> Any:
    """The declared type of a dotted ExperimentConfig key, or SpaceError for unknown keys."""
    section, _, name = key.partition(".")
    sections = {f.name: f.type for f in dataclasses.fields(ExperimentConfig)}
    hints = typing.get_type_hints(ExperimentConfig)
    if section not in sections or not name:
        raise SpaceError(
            f"{source}: unknown config key {key!r}; keys look like section.field, sections: {sorted(sections)}"
        )
    fields = typing.get_type_hints(hints[section])
    if name not in fields:
        raise SpaceError(f"{source}: unknown config key {key!r}; fields of {section}: {sorted(fields)}")
    return fields[name]


def _parse_param(key: str, spec: Any, earlier: list[Param], source: str) -> Param:
    where = f"{source}: parameters.{key}"
    annotation = _field_type(key, source)
    if key in NOT_SEARCHABLE:
        raise SpaceError(f"{where}: {key} is set by the sweep itself (epochs = ASHA's max epochs); put it in fixed:")
    if not isinstance(spec, dict) or "type" not in spec:
        raise SpaceError(f"{where}: expected a mapping with `type:` (one of {PARAM_TYPES})")
    kind = spec["type"]
    if kind not in PARAM_TYPES:
        raise SpaceError(f"{where}: unknown type {kind!r}; use one of {PARAM_TYPES}")
    allowed = {"type", "when"} | ({"values"} if kind == "choice" else {"low", "high", "step", "log"})
    extra = sorted(set(spec) - allowed)
    if extra:
        raise SpaceError(f"{where}: unexpected key(s) {extra} for type {kind}; allowed: {sorted(allowed)}")
    when = _parse_when(spec.get("when"), earlier, where)
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: choice needs a non-empty list `values: [...]`")
        if len({_encode(v) for v in values}) != len(values):
            raise SpaceError(f"{where}: choice values must be distinct, got {values}")
        return Param(key, kind, values=tuple(_freeze(v) for v in values), when=when)
    return _parse_range(key, kind, spec, annotation, when, where)


def _parse_range(key: str, kind: str, spec: dict, annotation: Any, when: tuple, where: str) -> Param:
    if annotation not in (int, float):
        raise SpaceError(f"{where}: {key} is not a number ({annotation}); use type: choice")
    if kind in ("uniform", "loguniform") and annotation is int:
        raise SpaceError(f"{where}: {key} is an integer field; use type: int (with log: true for a log scale)")
    if kind == "loguniform" and "step" in spec:
        raise SpaceError(f"{where}: loguniform takes no step")
    if "log" in spec and kind != "int":
        raise SpaceError(f"{where}: `log:` is for type int; use type: loguniform")
    numbers = {}
    for name in ("low", "high", "step"):
        value = spec.get(name)
        if value is None:
            if name != "step":
                raise SpaceError(f"{where}: {kind} needs `low:` and `high:`")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{where}: {name} must be a number, got {value!r} (write 1.0e-4, not 1e-4, in YAML)")
        if kind == "int" and float(value) != int(value):
            raise SpaceError(f"{where}: {name} must be an integer for type int, got {value!r}")
        numbers[name] = value
    low, high, step = numbers["low"], numbers["high"], numbers.get("step")
    if not low < high:
        raise SpaceError(f"{where}: empty range: low ({low}) must be < high ({high})")
    if step is not None and not 0 < step <= high - low:
        raise SpaceError(f"{where}: step ({step}) must be in (0, high - low]")
    if (kind == "loguniform" or spec.get("log")) and low <= 0:
        raise SpaceError(f"{where}: a log scale needs low > 0, got {low}")
    if spec.get("log") and step not in (None, 1):
        raise SpaceError(f"{where}: log: true cannot be combined with step")
    return Param(key, kind, low=low, high=high, step=step, log=bool(spec.get("log", False)), when=when)


def _parse_when(raw: Any, earlier: list[Param], where: str) -> tuple[tuple[str, tuple], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{where}: `when:` must map an earlier parameter to its allowed value(s)")
    by_key = {p.key: p for p in earlier}
    conditions = []
    for parent_key, allowed in raw.items():
        parent = by_key.get(parent_key)
        if parent is None:
            raise SpaceError(f"{where}: `when:` refers to {parent_key!r}, which is not a parameter listed above it")
        allowed = tuple(_freeze(v) for v in (allowed if isinstance(allowed, list) else [allowed]))
        for value in allowed:
            if parent.type == "choice" and value not in parent.values:
                raise SpaceError(
                    f"{where}: `when:` value {value!r} is not one of {parent_key}'s values {list(parent.values)}"
                )
            if parent.type != "choice" and not (parent.low <= value <= parent.high):
                raise SpaceError(f"{where}: `when:` value {value!r} is outside {parent_key}'s range")
        conditions.append((parent_key, allowed))
    return tuple(conditions)


def _check_against_config(space: SearchSpace, source: str) -> None:
    """Build the base config and apply every extreme of every parameter: config validation runs."""
    for key in space.fixed:
        _field_type(key, source)
    try:
        base = space.base()
    except ConfigError as exc:
        raise SpaceError(f"{source}: base/fixed config is invalid: {exc}") from None
    for param in space.parameters:
        for value in param.extremes():
            try:
                apply_overrides(base, {param.key: value})
            except ConfigError as exc:
                raise SpaceError(
                    f"{source}: parameters.{param.key} can take {value!r}, which is invalid: {exc}"
                ) from None


# Optuna categorical choices must be scalars: lists (e.g. widths) travel as JSON text.
def _encode(value: Any) -> Any:
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value.startswith("[") else value


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def describe(space: SearchSpace) -> dict[str, str]:
    """{key: human-readable distribution}, for logs and the MLflow parent run."""
    out = {}
    for p in space.parameters:
        if p.type == "choice":
            text = f"choice{[_encode(v) for v in p.values]}"
        else:
            text = f"{p.type}[{p.low}, {p.high}]" + (f" step {p.step}" if p.step else "") + (" log" if p.log else "")
        if p.when:
            text += " when " + ", ".join(f"{k} in {list(v)}" for k, v in p.when)
        out[p.key] = text
    return out
