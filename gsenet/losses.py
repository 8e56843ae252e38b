"""Loss terms with explicit shape contracts, weighted by `LossConfig`.

Every term takes `(estimate, target, lengths)`: estimate and target are (batch, time) waveforms,
zero-padded after each example's true length `lengths[b]`; padding never counts. A term whose
weight is 0 is never computed.

The terms rank outputs the way the metrics we report do (tests/test_losses.py checks a fixed set
of cases against SI-SDR and PESQ): the spectral terms compare the *optimally scaled* estimate
(as SI-SDR does, so a scaled copy of the target is perfect), the log-magnitude floor is relative to
the target's peak (an absolute 1e-5 made bins 40-100 dB below the speech dominate the objective),
and the compressed spectral error is relative to the target's compressed energy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsenet.config import LossConfig
from gsenet.metrics import RESIDUAL_FLOOR, SILENCE_FLOOR, ZERO_GUARD

EPS = 1e-8


def check_shapes(estimate: Tensor, target: Tensor, lengths: Tensor | None) -> Tensor:
    """Validate the (batch, time) contract; return lengths as a long tensor on estimate's device."""
    if estimate.dim() != 2 or estimate.shape != target.shape:
        raise ValueError(
            f"expected estimate and target of shape (batch, time), got {tuple(estimate.shape)} and {tuple(target.shape)}"
        )
    batch, time = estimate.shape
    if lengths is None:
        return torch.full((batch,), time, dtype=torch.long, device=estimate.device)
    lengths = torch.as_tensor(lengths, device=estimate.device).long()
    if lengths.shape != (batch,):
        raise ValueError(f"expected lengths of shape ({batch},), got {tuple(lengths.shape)}")
    if (lengths < 1).any() or (lengths > time).any():
        raise ValueError(f"lengths must be in 1..{time} (the padded time axis), got {lengths.tolist()}")
    return lengths


def sample_mask(lengths: Tensor, time: int) -> Tensor:
    """(batch, time) float mask: 1 inside each example, 0 on padding."""
    return (torch.arange(time, device=lengths.device)[None, :] < lengths[:, None]).float()


def si_sdr(estimate: Tensor, target: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Scale-invariant SDR in dB per example (batch,), over each example's valid samples.

    Same definition and guards as `gsenet.metrics.si_sdr` (relative to the target's energy), so an
    all-zero output scores -50 dB and shrinking the output never raises the score.
    """
    lengths = check_shapes(estimate, target, lengths)
    mask = sample_mask(lengths, estimate.shape[1])
    estimate, target = estimate * mask, target * mask
    n = lengths.to(estimate.dtype)[:, None]
    estimate = (estimate - estimate.sum(1, keepdim=True) / n) * mask  # zero-mean over valid part
    target = (target - target.sum(1, keepdim=True) / n) * mask
    target_energy = target.pow(2).sum(1, keepdim=True) + ZERO_GUARD
    projection = ((estimate * target).sum(1, keepdim=True) / target_energy) * target
    noise = estimate - projection
    target_energy = target_energy[:, 0]
    signal_power = projection.pow(2).sum(1) + SILENCE_FLOOR * target_energy
    noise_power = noise.pow(2).sum(1) + RESIDUAL_FLOOR * target_energy
    return 10 * torch.log10(signal_power / noise_power)


def scale_to_target(estimate: Tensor, target: Tensor) -> Tensor:
    """alpha * estimate with alpha = <estimate, target> / <estimate, estimate> per example: the
    scaling SI-SDR applies (inputs already zero on padding). The gradient has no component along
    the estimate's own direction, so the output level is left where the model puts it (the beam's
    level for the residual mask)."""
    alpha = (estimate * target).sum(1, keepdim=True) / (estimate.pow(2).sum(1, keepdim=True) + ZERO_GUARD)
    return alpha * estimate


def magnitude(spec: Tensor) -> Tensor:
    """|spec| with a finite gradient at 0 (torch's complex abs has a NaN gradient there)."""
    return (spec.real.pow(2) + spec.imag.pow(2) + EPS).sqrt()


def _stft_mag_frames(x: Tensor, n_fft: int, hop: int, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Complex STFT (batch, frames, freqs) and a (batch, frames) mask of frames inside each example.

    Frames are not centred: frame t covers samples [t*hop, t*hop + n_fft), and it counts when it
    starts inside the example (the signal is zero-padded past its end, so padding adds nothing).
    """
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    time = x.shape[1]
    if time < n_fft:
        x = nn.functional.pad(x, (0, n_fft - time))
    spec = torch.stft(x, n_fft, hop, window=window, center=False, return_complex=True).transpose(1, 2)
    starts = torch.arange(spec.shape[1], device=x.device) * hop
    frame_mask = (starts[None, :] < lengths[:, None]).float()
    return spec, frame_mask


def multires_stft_loss(
    estimate: Tensor,
    target: Tensor,
    lengths: Tensor | None,
    resolutions=((512, 128), (1024, 256), (2048, 512)),
    log_floor_db: float = -40.0,
    scale_invariant: bool = True,
) -> Tensor:
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions (per batch mean).

    The log term is log(|E| + f) - log(|T| + f) with f = 10^(log_floor_db / 20) x the target's
    peak magnitude (per example and resolution): errors far below the speech do not count more
    than audible ones. With `scale_invariant` the estimate is first scaled as SI-SDR scales it.
    """
    lengths = check_shapes(estimate, target, lengths)
    mask = sample_mask(lengths, estimate.shape[1])
    estimate, target = estimate * mask, target * mask
    if scale_invariant:
        estimate = scale_to_target(estimate, target)
    floor_ratio = 10 ** (log_floor_db / 20)
    total = estimate.new_zeros(())
    for n_fft, hop in resolutions:
        est_spec, frame_mask = _stft_mag_frames(estimate, n_fft, hop, lengths)
        tgt_spec, _ = _stft_mag_frames(target, n_fft, hop, lengths)
        est_mag, tgt_mag = magnitude(est_spec), magnitude(tgt_spec)
        m = frame_mask[:, :, None]
        convergence = (((tgt_mag - est_mag) * m).pow(2).sum((1, 2)) + EPS).sqrt() / (
            (tgt_mag * m).pow(2).sum((1, 2)) + EPS
        ).sqrt()
        floor = floor_ratio * (tgt_mag * m).amax((1, 2), keepdim=True) + EPS
        log_l1 = ((torch.log(est_mag + floor) - torch.log(tgt_mag + floor)).abs() * m).sum((1, 2))
        log_l1 = log_l1 / (m.sum((1, 2)) * est_mag.shape[-1]).clamp_min(1)
        total = total + (convergence + log_l1).mean()
    return total / len(resolutions)


def compressed_spectral_loss(
    estimate: Tensor,
    target: Tensor,
    lengths: Tensor | None,
    n_fft: int = 512,
    hop: int = 128,
    exponent: float = 0.3,
    magnitude_weight: float = 0.7,
    scale_invariant: bool = True,
) -> Tensor:
    """Squared error between power-law compressed spectra (magnitude term + complex term), relative
    to the target's compressed energy (per batch mean): the same on a quiet and a loud recording.
    With `scale_invariant` the estimate is first scaled as SI-SDR scales it."""
    lengths = check_shapes(estimate, target, lengths)
    mask = sample_mask(lengths, estimate.shape[1])
    estimate, target = estimate * mask, target * mask
    if scale_invariant:
        estimate = scale_to_target(estimate, target)
    est_spec, frame_mask = _stft_mag_frames(estimate, n_fft, hop, lengths)
    tgt_spec, _ = _stft_mag_frames(target, n_fft, hop, lengths)

    est_mag, tgt_mag = magnitude(est_spec), magnitude(tgt_spec)
    est_c, tgt_c = est_mag**exponent, tgt_mag**exponent  # compressed magnitudes
    m = frame_mask[:, :, None]
    count = (m.sum((1, 2)) * est_c.shape[-1]).clamp_min(1)
    magnitude_part = ((est_c - tgt_c).pow(2) * m).sum((1, 2)) / count
    difference = est_spec * (est_c / est_mag) - tgt_spec * (tgt_c / tgt_mag)  # compressed complex
    complex_part = ((difference.real.pow(2) + difference.imag.pow(2)) * m).sum((1, 2)) / count
    reference = (tgt_c.pow(2) * m).sum((1, 2)) / count + EPS
    return ((magnitude_weight * magnitude_part + (1 - magnitude_weight) * complex_part) / reference).mean()


def _multires_stft_term(estimate: Tensor, target: Tensor, lengths: Tensor, cfg: LossConfig) -> Tensor:
    return multires_stft_loss(estimate, target, lengths, cfg.stft_resolutions, cfg.log_floor_db, cfg.scale_invariant)


def _compressed_spectral_term(estimate: Tensor, target: Tensor, lengths: Tensor, cfg: LossConfig) -> Tensor:
    return compressed_spectral_loss(
        estimate,
        target,
        lengths,
        exponent=cfg.compress_exponent,
        magnitude_weight=cfg.compressed_magnitude_weight,
        scale_invariant=cfg.scale_invariant,
    )


def _si_sdr_term(estimate: Tensor, target: Tensor, lengths: Tensor, cfg: LossConfig) -> Tensor:
    return -si_sdr(estimate, target, lengths).mean() / 10  # dB/10: same scale as others


# How to compute each term of config.LOSS_TERMS (a weight field of LossConfig of the same name).
TERM_FUNCTIONS = {
    "multires_stft": _multires_stft_term,
    "compressed_spectral": _compressed_spectral_term,
    "si_sdr": _si_sdr_term,
}


class GSENetLoss(nn.Module):
    """Weighted sum of the configured terms. Returns (total, {term: value}) for logging."""

    def __init__(self, cfg: LossConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg

    def forward(
        self, estimate: Tensor, target: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        lengths = check_shapes(estimate, target, lengths)
        cfg = self.cfg
        terms = {name: TERM_FUNCTIONS[name](estimate, target, lengths, cfg) for name in cfg.active_terms()}
        total = sum(getattr(cfg, name) * value for name, value in terms.items())
        return total, terms
