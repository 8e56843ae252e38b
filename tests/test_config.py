"""The one config: YAML, dotted overrides and flat params are views of the same dataclasses."""

import pytest

from gsenet.config import ConfigError, ExperimentConfig, apply_overrides, dump_yaml, flatten, load_yaml


def test_yaml_roundtrip(tmp_path):
    cfg = apply_overrides(
        ExperimentConfig(), ["model.widths=[8,16,24,24,48,48]", "loss.si_sdr=0.5", "model.output_mode=mask"]
    )
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_yaml(path) == cfg


def test_flatten_has_every_field():
    flat = flatten(ExperimentConfig())
    assert flat["model.dilation_depth"] == 2
    assert flat["loss.stft_resolutions"] == [[512, 128], [1024, 256], [2048, 512]]
    assert all("." in key for key in flat)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.widht=3", "unknown config key 'model.widht'"),
        ("modle.widths=3", "unknown config key 'modle.widths'"),
        ("model.dilation_depth=1.5", "expected an integer"),
        ("model.widths=[1,2]", "needs 6 values"),
        ("model.n_fft=300", "multiple of hop"),
        ("loss.si_sdr=-1", "weights must be >= 0"),
        ("model.inputs=stereo", "must be one of"),
        ("nonsense", "must look like section.key=value"),
    ],
)
def test_bad_overrides_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(ExperimentConfig(), [override])


def test_bad_yaml_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  depth: 3\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml: unknown config key\(s\) \['model.depth'\]"):
        load_yaml(unknown)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
