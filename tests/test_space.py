"""Search-space files: parsing, validation errors named before anything starts, sampling."""

from __future__ import annotations

import optuna
import pytest
import yaml

from gsenet.config import ExperimentConfig
from search.space import SpaceError, load_space, parse_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def space_from(text: str, **kwargs):
    return parse_space(yaml.safe_load(text), source="test.yaml", text=text, **kwargs)


@pytest.mark.parametrize("name", ["default", "smoke"])
def test_bundled_spaces_sample_valid_configs(name):
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(25):
        trial = study.ask()
        params = space.sample(trial)
        cfg = space.trial_config(params)  # validates
        assert isinstance(cfg, ExperimentConfig)
        for key, value in params.items():
            section, field = key.split(".")
            actual = getattr(getattr(cfg, section), field)
            assert (list(actual) if isinstance(actual, tuple) else actual) == value
        seen.add(params["model.width_multiplier"])
        study.tell(trial, 1.0)
    assert len(seen) > 1
    assert space.base().train.epochs == (2 if name == "smoke" else 20)


def test_conditional_parameter_only_sampled_when_parent_allows():
    space = load_space("default")
    common = {
        "model.widths": "[16, 32, 48, 48, 96, 96]",
        "model.width_multiplier": 1.0,
        "model.dilation_depth": 2,
        "model.skip_connection": "concat",
        "loss.multires_stft": 1.0,
        "loss.si_sdr": 0.1,
        "optim.lr": 1e-3,
    }
    off = space.sample(optuna.trial.FixedTrial({**common, "loss.compressed_spectral": 0.0}))
    assert "loss.compress_exponent" not in off
    on = space.sample(
        optuna.trial.FixedTrial({**common, "loss.compressed_spectral": 0.5, "loss.compress_exponent": 0.3})
    )
    assert on["loss.compress_exponent"] == 0.3
    assert on["model.widths"] == [16, 32, 48, 48, 96, 96]  # list choices decoded
    cfg = space.trial_config(on)
    assert cfg.model.widths == (16, 32, 48, 48, 96, 96) and cfg.loss.compress_exponent == 0.3


def test_fixed_base_and_sweep_sections(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  dilation_depth: 3\ntrain:\n  epochs: 7\n")
    text = """
base: base.yaml
fixed: {data.batch_size: 4}
sweep: {metric: val_si_sdr, num_samples: 5}
parameters:
  optim.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
"""
    space = space_from(text, relative_to=tmp_path)
    base = space.base()
    assert (base.model.dilation_depth, base.train.epochs, base.data.batch_size) == (3, 7, 4)
    settings = space.settings(num_samples=9, max_concurrent=None)
    assert settings.num_samples == 9 and settings.max_concurrent == 2
    assert settings.resolved_mode() == "max"  # SI-SDR: higher is better
    assert space.with_fixed({"train.num_workers": 2}).base().train.num_workers == 2
    with pytest.raises(SpaceError, match="searched by the space"):
        space.with_fixed({"optim.lr": 0.1})


BAD_SPACES = {
    "unknown config key 'model.width_mult'": "parameters: {model.width_mult: {type: choice, values: [1]}}",
    "unknown config key 'modle.widths'": "parameters: {modle.widths: {type: choice, values: [1]}}",
    "unknown type 'normal'": "parameters: {optim.lr: {type: normal, low: 0, high: 1}}",
    "integer field; use type: int": "parameters: {model.dilation_depth: {type: uniform, low: 1, high: 3}}",
    "not a number": "parameters: {model.inputs: {type: int, low: 1, high: 3}}",
    "empty range": "parameters: {optim.lr: {type: uniform, low: 0.01, high: 0.001}}",
    "non-empty list": "parameters: {model.inputs: {type: choice, values: []}}",
    "log scale needs low > 0": "parameters: {optim.lr: {type: loguniform, low: 0.0, high: 0.1}}",
    "must be a number": "parameters: {optim.lr: {type: loguniform, low: 1e-4, high: 0.1}}",  # YAML 1.1: a string
    "must be in 0..6": "parameters: {model.dilation_depth: {type: int, low: 1, high: 9}}",
    "not a parameter listed above": (
        "parameters:\n  loss.compress_exponent: {type: uniform, low: 0.2, high: 0.5, when: {loss.si_sdr: 0.5}}\n"
        "  loss.si_sdr: {type: choice, values: [0.0, 0.5]}"
    ),
    "not one of loss.si_sdr's values": (
        "parameters:\n  loss.si_sdr: {type: choice, values: [0.0, 0.5]}\n"
        "  loss.compress_exponent: {type: uniform, low: 0.2, high: 0.5, when: {loss.si_sdr: 0.7}}"
    ),
    "set by the sweep itself": "parameters: {train.epochs: {type: int, low: 2, high: 9}}",
    "unknown section": "params: {optim.lr: {type: uniform, low: 0.1, high: 0.2}}",
    "unknown sweep setting": "sweep: {num_trials: 3}\nparameters: {optim.lr: {type: uniform, low: 0.1, high: 0.2}}",
    "sweep.metric must be one of": "sweep: {metric: val_los}\nparameters: {optim.lr: {type: uniform, low: 0.1, high: 0.2}}",
    "parameters:` is empty": "parameters: {}",
    "base/fixed config is invalid": "fixed: {model.dilation_depth: 12}\nparameters: {optim.lr: {type: uniform, low: 0.1, high: 0.2}}",
    "unexpected key": "parameters: {optim.lr: {type: uniform, low: 0.1, high: 0.2, values: [1]}}",
}


@pytest.mark.parametrize("message", list(BAD_SPACES))
def test_bad_space_is_a_clear_error(message):
    with pytest.raises(SpaceError) as info:
        space_from(BAD_SPACES[message])
    assert message in str(info.value)
    assert str(info.value).startswith("test.yaml")


def test_missing_space_file_lists_the_bundled_ones():
    with pytest.raises(SpaceError, match=r"not found.*'default'.*'smoke'"):
        load_space("no-such-space")


def test_weighted_loss_metric_with_searched_weights_warns():
    space = load_space("default")
    assert space.settings().metric == "val_si_sdr" and space.warnings(space.settings()) == []
    (warning,) = space.warnings(space.settings(metric="val_loss"))
    assert "loss.si_sdr" in warning and "val_si_sdr" in warning


def test_default_space_sweep_settings_are_the_code_defaults():
    """The searcher/scheduler settings chosen on the multi-fidelity benchmarks (README, Sweeps) are
    both SweepSettings' defaults and the default space's, so a space without `sweep:` gets them too."""
    from search.space import SweepSettings

    chosen = {"searcher": "tpe", "scheduler": "asha", "grace_period": 4, "reduction_factor": 3, "brackets": 2}
    chosen["n_startup_trials"] = 4
    code, shipped = SweepSettings(), load_space("default").settings()
    for key, value in chosen.items():
        assert getattr(code, key) == value == getattr(shipped, key), key
    with pytest.raises(SpaceError, match="sweep.brackets must be >= 1"):
        load_space("default").settings(brackets=0)
