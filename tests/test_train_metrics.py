"""The validation report's metric names: no loss weight can make a loss term replace a metric."""

import itertools

import pytest

from gsenet.metrics import disjoint_union
from gsenet.train import validation_metrics

TERMS = ("multires_stft", "compressed_spectral", "si_sdr")
QUALITY = {"si_sdr": -3.0, "si_sdr_beam": -5.0, "si_sdr_improvement": 2.0, "pesq": 1.5, "stoi": 0.8}


@pytest.mark.parametrize("active", [c for r in range(4) for c in itertools.combinations(TERMS, r)])
def test_every_combination_of_loss_weights_keeps_every_metric(active):
    terms = {name: 0.1 * (i + 1) for i, name in enumerate(active)}
    out = validation_metrics(1.25, terms, QUALITY)
    assert len(out) == 1 + len(terms) + len(QUALITY)  # no key lost
    assert out["val_loss"] == 1.25
    for name, value in QUALITY.items():
        assert out[f"val_{name}"] == value  # the true metric, never the loss term
    for name, value in terms.items():
        assert out[f"val_loss_{name}"] == value


def test_a_collision_is_an_error_not_an_overwrite():
    with pytest.raises(ValueError, match="val_si_sdr"):
        disjoint_union({"val_si_sdr": 1.0}, {"val_si_sdr": 2.0})
