"""Enhancement with a loaded GSENet: tensors or arrays, offline or through the causal streamer."""

from __future__ import annotations

import numpy as np
import torch

from gsenet.model import GSENet


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


LEVEL_RECORDINGS = 8  # recordings a trained model's output level is set on (median gain)


@torch.no_grad()
def calibrate_output_level(model: GSENet, items) -> float:
    """Scale a mask model's output (exactly, `gsenet.model.scale_output`) by the median over `items`
    ({"beam", "ref", "target"} 1-D arrays or tensors) of rms(target) / rms(output), so it comes out
    at its target's level; returns the gain applied in dB. Why: the scale-invariant losses leave the
    output level free, and it drifts by tens of dB during training; the metrics ignore it, a listener
    and the next stage on a device do not. A mapping head cannot be rescaled exactly: 0 dB, unchanged."""
    from gsenet.model import scale_output

    if model.cfg.output_mode not in ("residual_mask", "mask") or not items:
        return 0.0
    gains = []
    for item in items:
        beam, ref, target = (np.asarray(item[k], np.float64) for k in ("beam", "ref", "target"))
        out = enhance_arrays(model, beam, ref).astype(np.float64)
        gains.append(np.sqrt(np.dot(target, target) / max(np.dot(out, out), 1e-20)))
    gain = float(np.median(gains))
    scale_output(model, gain)
    return 20 * np.log10(gain)
