"""The README's "Python API for notebooks" block, run as written against a real registered model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from fixtures.recordings import make_dataset

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(section: str) -> str:
    text = README.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_python_api_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    from gsenet import tracking
    from gsenet.config import ModelConfig
    from gsenet.inference import enhance_arrays, save_model_folder
    from gsenet.model import GSENet

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    make_dataset("data", n_per_split=2, seconds=0.6)
    cfg = ModelConfig(widths=(4, 4, 8, 8, 8, 8), dilation_depth=1)
    torch.manual_seed(0)
    reference_model = GSENet(cfg).eval()
    folder = save_model_folder(reference_model.state_dict(), cfg, tmp_path / "model")
    uri = tracking.resolve_tracking_uri("sqlite:///mlruns.db")
    from mlflow import MlflowClient

    run_id = MlflowClient(uri).create_run(tracking.get_or_create_experiment(uri, "readme")).info.run_id
    tracking.log_pyfunc_model(uri, run_id, folder, "best_model")
    assert tracking.register_model(uri, run_id, "gsenet-best") == ("models:/gsenet-best@best", "1")  # as a sweep does

    namespace: dict = {}
    exec(compile(readme_block("Python API for notebooks"), "README.md", "exec"), namespace)  # noqa: S102
    assert "2 recordings: SI-SDR" in capsys.readouterr().out
    beam, ref = namespace["beam"], namespace["ref"]
    np.testing.assert_allclose(namespace["enhanced"], enhance_arrays(reference_model, beam, ref), atol=1e-6)
    np.testing.assert_allclose(namespace["streamed"], namespace["enhanced"], atol=1e-5)
    assert len(namespace["rows"]) == 2 and np.isfinite(namespace["summary"]["mean_si_sdr"])
