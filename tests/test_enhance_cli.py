"""`gsenet enhance` from the command line: offline and streaming agree, streaming runs on one thread."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from fixtures.recordings import make_dataset

from gsenet.cli import main


def _model_folder(tmp_path):
    from gsenet.config import ModelConfig
    from gsenet.inference import save_model_folder
    from gsenet.model import GSENet

    cfg = ModelConfig(widths=(4, 4, 8, 8, 8, 8), dilation_depth=1)
    torch.manual_seed(0)
    return save_model_folder(GSENet(cfg).state_dict(), cfg, tmp_path / "model")


def test_enhance_dataset_offline_and_streaming_agree(tmp_path, monkeypatch, capsys):
    model = _model_folder(tmp_path)
    data = make_dataset(tmp_path / "data", n_per_split=2, seconds=0.7)
    threads = []
    real_set_num_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (threads.append(n), real_set_num_threads(n)))
    assert main(["enhance", str(model), str(data / "test"), str(tmp_path / "offline")]) == 0
    assert threads == []  # offline keeps the machine's threads
    assert main(["enhance", str(model), str(data / "test"), str(tmp_path / "stream"), "--streaming"]) == 0
    assert threads == [1]  # hop-sized ops on a thread pool are ~50x slower on a busy machine
    out = capsys.readouterr().out
    assert f"wrote 2 enhanced recordings under {tmp_path / 'stream'}" in out
    for name in ("rec_000", "rec_001"):
        offline, sr = sf.read(tmp_path / "offline" / name / "enhanced.wav")
        streamed, _ = sf.read(tmp_path / "stream" / name / "enhanced.wav")
        assert sr == 16000 and offline.shape == streamed.shape
        np.testing.assert_allclose(streamed, offline, atol=1e-5)
