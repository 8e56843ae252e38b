"""Export: a model folder plus model.onnx (ONNX, dynamo exporter) or model.ts (TorchScript), both with
dynamic batch and time, and a check of the export against PyTorch (`gsenet export`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gsenet.config import ModelConfig
from gsenet.model import GSENet
from gsenet.model_files import save_model_folder

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
