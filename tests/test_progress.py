"""Progress bars: shown on a terminal, silent in logs (stderr not a TTY)."""

from __future__ import annotations

import io
import sys

from gsenet.simulate import simulate_dataset


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_simulate_shows_a_bar_on_a_terminal_only(tmp_path, monkeypatch, capsys):
    simulate_dataset(tmp_path / "quiet", recordings=3, seed=0, duration_s=0.5)
    assert capsys.readouterr().err == ""  # pytest's captured stderr is not a terminal
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    simulate_dataset(tmp_path / "tty", recordings=3, seed=0, duration_s=0.5)
    text = terminal.getvalue()
    assert "simulate paper" in text and "3/3" in text
    terminal.truncate(0)
    simulate_dataset(tmp_path / "off", recordings=3, seed=0, duration_s=0.5, progress=False)
    assert terminal.getvalue().strip("\x00") == ""


def test_evaluate_reports_progress_per_recording(tmp_path, monkeypatch):
    import torch
    from fixtures.recordings import make_dataset

    from gsenet.config import ModelConfig
    from gsenet.inference import evaluate_model
    from gsenet.model import GSENet

    data = make_dataset(tmp_path / "data", n_per_split=2, seconds=0.5)
    cfg = ModelConfig(widths=(4, 4, 8, 8, 8, 8), dilation_depth=1)
    torch.manual_seed(0)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    rows = evaluate_model(GSENet(cfg).eval(), cfg, data, "test", perceptual=False)
    assert len(rows) == 2 and "evaluate test" in terminal.getvalue() and "2/2" in terminal.getvalue()
