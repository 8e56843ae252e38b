"""GSENet: the Guided Speech Enhancement Network (Yang et al., ICASSP 2023), causal and streamable.

Read top to bottom:
1. `CausalSTFT`: framing that only looks back, so output length == input length for any length.
2. Blocks: `CausalConv2d` (time-causal, frequency-centred), `TimeDilatedBlock`, `EncoderBlock`,
   `DecoderBlock`.
3. `GSENet`: 7x7 input conv, 5 encoder blocks, a time-dilated bottleneck, 5 mirrored decoder blocks
   with skip connections, 7x7 output conv to a complex mask on the beam (by default 1 + net,
   starting at exactly 1: an untrained model passes the beam through) or a spectrum, inverse STFT.
4. `GSENetStreamer`: the same modules run one hop at a time with their own state; its output equals
   the offline model's (tests/test_model.py checks both).

Tensors inside the network are (batch, channels, time frames, frequency bins). Every convolution
pads time on the left only, so frame t never sees frame t+1. A block with time stride 2 produces
frame j from input frames <= 2j, and its decoder mirror gives frames 2j and 2j+1 from that frame j:
both are causal.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsenet.config import ModelConfig


# ----------------------------------------------------------------------------------------------
# 1. Causal STFT
# ----------------------------------------------------------------------------------------------
class CausalSTFT(nn.Module):
    """Hann-window STFT whose frame t ends at sample (t + 1) * hop, and its overlap-add inverse.

    The signal is left-padded by n_fft - hop zeros, so frame t covers samples
    [(t + 1) * hop - n_fft, (t + 1) * hop): it never reaches past the hop it ends on. After the
    ceil(L / hop) frames that end inside the signal come n_fft / hop - 1 frames over its zero-padded
    end, so that every output sample is overlap-added from all the frames that cover it (dividing
    by the summed squared window is then well conditioned everywhere, including the last samples).
    The streaming model produces those extra frames in `flush()`.
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def num_frames(self, length: int) -> int:
        return -(-length // self.hop) + self.n_fft // self.hop - 1

    def forward(self, x: Tensor) -> Tensor:
        """(B, L) real -> (B, T, F) complex, T = num_frames(L)."""
        length = x.shape[-1]
        pad_right = (self.num_frames(length) * self.hop) - length
        x = F.pad(x, (self.n_fft - self.hop, pad_right))
        framed = x.unfold(-1, self.n_fft, self.hop)  # (B, T, n_fft)
        return torch.fft.rfft(framed * self.window, dim=-1)

    def frames_to_samples(self, spec: Tensor) -> Tensor:
        """(B, T, F) complex -> windowed time frames (B, T, n_fft), ready for overlap-add."""
        return torch.fft.irfft(spec, n=self.n_fft, dim=-1) * self.window

    def inverse(self, spec: Tensor, length: int) -> Tensor:
        """(B, T, F) complex -> (B, length) real."""
        batch, frames, _ = spec.shape
        chunks = self.frames_to_samples(spec).transpose(1, 2)  # (B, n_fft, T)
        total = (frames - 1) * self.hop + self.n_fft
        out = F.fold(chunks, (1, total), (1, self.n_fft), stride=(1, self.hop)).reshape(batch, total)
        norm = self.window_sum(frames, total, spec.device)
        start = self.n_fft - self.hop
        return out[:, start : start + length] / norm[start : start + length]

    def window_sum(self, frames: int, total: int, device: torch.device) -> Tensor:
        squared = (self.window**2).to(device).reshape(1, self.n_fft, 1).expand(1, self.n_fft, frames)
        norm = F.fold(squared, (1, total), (1, self.n_fft), stride=(1, self.hop)).reshape(total)
        return norm.clamp_min(1e-8)


def safe_magnitude(spec: Tensor, eps: float = 1e-8) -> Tensor:
    """|spec| with a finite gradient at 0 (complex abs has a NaN gradient there)."""
    return (spec.real.pow(2) + spec.imag.pow(2) + eps).sqrt()


# ----------------------------------------------------------------------------------------------
# 2. Blocks
# ----------------------------------------------------------------------------------------------
class CausalConv2d(nn.Module):
    """2-D conv over (time, frequency): causal in time, centred in frequency.

    Time is padded explicitly, `time_context - lookahead` frames on the left and `lookahead` on the
    right (a concatenation with zero frames: F.pad would zero-fill the whole output before copying
    the input in, 1.15x slower bf16 training), and the conv itself pads frequency only: frame t sees frames t - time_context + lookahead
    .. t + lookahead. (Padding time inside the conv on both sides and slicing the surplus frames off
    gives the same numbers, but the taller output pushes oneDNN's weight-gradient kernels from
    avx512/AMX to avx2/gemm ones, and the slice's backward is a zero-fill + copy: 1.16x slower
    training in fp32, measured in benchmarks/model_speed.py.)
    """

    def __init__(self, cin: int, cout: int, kernel=(3, 3), stride=(1, 1), dilation=(1, 1), lookahead: int = 0):
        super().__init__()
        kt, kf = kernel
        self.time_context = (kt - 1) * dilation[0]  # past frames the kernel sees
        self.lookahead = lookahead  # future frames the kernel sees (only the input conv)
        self.time_stride = stride[0]
        self.freq_padding = dilation[1] * (kf - 1) // 2
        self.time_padding = (self.time_context - lookahead, lookahead)  # (past, future) frames
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=(0, self.freq_padding), dilation=dilation)
        # A strided 1x1 conv is a 1x1 conv of the subsampled input: the same sums, but oneDNN's
        # strided 1x1 kernels (forward + backward) ran ~3x slower than slice + unstrided conv.
        self.subsample = tuple(kernel) == (1, 1) and tuple(stride) != (1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, F) -> (B, cout, ceil(T / time_stride), F / freq_stride)."""
        if self.subsample:
            time_stride, freq_stride = self.conv.stride
            return F.conv2d(x[:, :, ::time_stride, ::freq_stride], self.conv.weight, self.conv.bias)
        if self.time_context:
            batch, channels, _, bins = x.shape
            past, future = self.time_padding
            parts = [x.new_zeros(batch, channels, past, bins), x]
            if future:
                parts.append(x.new_zeros(batch, channels, future, bins))
            x = torch.cat(parts, dim=2)
        return self.conv(x)

    def step(self, frame: Tensor, state: dict, emit: bool = True) -> Tensor | None:
        """One new input frame in the streamer's layout (B, F, C). Returns one output frame
        (B, F / freq_stride, cout), or None when not `emit` (a time-strided conv only produces every
        `time_stride`-th frame)."""
        if not self.time_context and not self.freq_padding:  # a 1x1 conv: no past, no padding
            return (
                frame_conv(frame.contiguous().unsqueeze(2), packed_weights(self.conv, state)[0], self.conv)
                if emit
                else None
            )
        taps, weight = TapRing.of(self, self.conv, frame, self.freq_padding, state).push(frame)
        return frame_conv(taps, weight, self.conv) if emit else None


class TapRing:
    """A streaming conv's past frames, kept where its one-frame GEMM reads them.

    A conv with kt time taps at dilation d keeps d rings of kt slots, each frequency-padded:
    (d, B, F + 2 pad, kt, C), zeros at the start (the offline conv's causal padding). Frame t goes to
    ring t % d, slot (t // d) % kt, so ring t % d then holds exactly the frames output t taps (t,
    t - d, ..., t - (kt - 1) d), in slot order rotated by (t // d) % kt; the weights packed for each
    rotation undo it. One frame is copied in per hop, and nothing is shifted or concatenated.
    """

    def __init__(self, conv: nn.Conv2d, frame: Tensor, freq_padding: int, weights: list[Tensor]):
        self.taps, self.dilation = conv.kernel_size[0], conv.dilation[0]
        batch, bins, channels = frame.shape
        self.bins = slice(freq_padding, freq_padding + bins)
        self.rings = frame.new_zeros(self.dilation, batch, bins + 2 * freq_padding, self.taps, channels)
        self.weights, self.frames = weights, 0

    @staticmethod
    def of(owner: nn.Module, conv: nn.Conv2d, frame: Tensor, freq_padding: int, state: dict) -> TapRing:
        """`owner`'s ring in the streamer's `state`, made at its first frame."""
        if owner not in state:
            state[owner] = TapRing(conv, frame, freq_padding, packed_weights(conv, state))
        return state[owner]

    def push(self, frame: Tensor) -> tuple[Tensor, Tensor]:
        """Store a new frame (B, F, C); return the ring holding its taps and the weight for its order."""
        ring, rotation = self.frames % self.dilation, (self.frames // self.dilation) % self.taps
        self.rings[ring, :, self.bins, rotation] = frame
        self.frames += 1
        return self.rings[ring], self.weights[rotation]


def frame_conv(taps: Tensor, weight: Tensor, conv: nn.Conv2d) -> Tensor:
    """`conv` over one output frame as one GEMM: taps (B, F + 2 pad, kt, C) -> (B, F_out, cout).

    Output bin f reads kf consecutive (frequency-padded) rows of the taps, kf * kt * C contiguous
    numbers, so the im2col matrix is a strided view, copied once for a GEMM with the bins as rows
    and the packed (kf * kt * C, cout) weight on the right. `F.conv1d` on a (channels x taps, bins)
    layout ran slow_conv2d's im2col and a GEMM whose inner dimension was the 11-161 bins: 1.4x
    slower streaming (benchmarks/stream_speed.py)."""
    batch, bins, kt, channels = taps.shape
    row, freq_stride = kt * channels, conv.stride[1]
    out_bins = (bins - weight.shape[0] // row) // freq_stride + 1
    cols = taps.as_strided((batch, out_bins, weight.shape[0]), (taps.stride(0), freq_stride * row, 1))
    cols = cols.reshape(batch * out_bins, -1)
    out = cols @ weight if conv.bias is None else torch.addmm(conv.bias, cols, weight)
    return out.view(batch, out_bins, -1)


def packed_weights(conv: nn.Conv2d, state: dict) -> list[Tensor]:
    """conv.weight (cout, cin, kt, kf) as (kf * kt * cin, cout) matrices for `frame_conv`, one per
    rotation of a `TapRing`'s slots (slot s holds tap kt - 1 - ((rotation - s) % kt)), packed once
    per streamer: a streamer runs with the weights it first used."""
    key = ("packed weights", conv)
    if key not in state:
        if conv.dilation[1] != 1:
            raise ValueError(f"streaming needs frequency dilation 1, got {conv.dilation}")
        by_tap = conv.weight.permute(3, 2, 1, 0)  # (kf, kt, cin, cout)
        kt = by_tap.shape[1]
        state[key] = [
            by_tap[:, [kt - 1 - (rotation - slot) % kt for slot in range(kt)]]
            .reshape(-1, conv.out_channels)
            .contiguous()
            for rotation in range(kt)
        ]
    return state[key]


class TimeDilatedBlock(nn.Module):
    """`depth` residual causal convs with time dilations 3, 9, 27, ...: a long causal context."""

    def __init__(self, channels: int, depth: int, negative_slope: float):
        super().__init__()
        self.convs = nn.ModuleList(
            CausalConv2d(channels, channels, (3, 3), dilation=(3**k, 1)) for k in range(1, depth + 1)
        )
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = x + self.act(conv(x))
        return x

    def step(self, x: Tensor, state: dict) -> Tensor:
        for conv in self.convs:
            x = x + self.act(conv.step(x, state))
        return x


class EncoderBlock(nn.Module):
    """conv -> [time-dilated block] -> strided conv, plus a 1x1 strided projection residual.

    Returns (skip, down): the full-resolution features for the decoder and the downsampled output.
    """

    def __init__(self, cin: int, cout: int, stride: tuple[int, int], depth: int, slope: float):
        super().__init__()
        self.conv = CausalConv2d(cin, cin, (3, 3))
        self.tdb = TimeDilatedBlock(cin, depth, slope) if depth > 0 else None
        self.down = CausalConv2d(cin, cout, (3, 3), stride=stride)
        self.project = CausalConv2d(cin, cout, (1, 1), stride=stride)
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = self.act(self.conv(x))
        if self.tdb is not None:
            skip = self.tdb(skip)
        return skip, self.act(self.down(skip)) + self.project(x)

    def step(self, x: Tensor, state: dict, emit: bool) -> tuple[Tensor, Tensor | None]:
        skip = self.act(self.conv.step(x, state))
        if self.tdb is not None:
            skip = self.tdb.step(skip, state)
        down = self.down.step(skip, state, emit)
        project = self.project.step(x, state, emit)
        return skip, None if down is None else self.act(down) + project


class SubPixelUp(nn.Module):
    """Upsample by (time_stride, freq_stride) with one conv and a pixel shuffle.

    Output frame s*j + q comes from input frame j only (causal), and output bin 2k + p from input
    bins k and k + 1: the receptive field of a stride-2, kernel-3 transposed conv, at a quarter of
    its CPU cost (measured in benchmarks/model_speed.py's profile).
    """

    def __init__(self, cin: int, cout: int, time_stride: int, freq_stride: int, out_freqs: int):
        super().__init__()
        self.cout, self.time_stride, self.freq_stride, self.out_freqs = cout, time_stride, freq_stride, out_freqs
        kf = 2 if freq_stride > 1 else 3  # bins (k, k+1) when upsampling, else (k-1, k, k+1)
        self.conv = nn.Conv2d(cin, cout * time_stride * freq_stride, (1, kf), padding=(0, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.freq_stride > 1:
            y = y[..., 1:]  # output bin k sees input bins k and k + 1 (zero past the top bin)
        batch, _, frames, bins = y.shape
        st, sf = self.time_stride, self.freq_stride
        y = y.reshape(batch, self.cout, st, sf, frames, bins).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(batch, self.cout, frames * st, bins * sf)[..., : self.out_freqs]

    def step(self, frame: Tensor, state: dict) -> Tensor:
        """One low-rate frame (B, F, C) -> its time_stride output frames (B, time_stride, F_out, cout)."""
        y = frame_conv(*TapRing.of(self, self.conv, frame, 1, state).push(frame), self.conv)
        if self.freq_stride > 1:
            y = y[:, 1:]
        batch, bins, _ = y.shape
        st, sf = self.time_stride, self.freq_stride
        y = y.reshape(batch, bins, self.cout, st, sf).permute(0, 3, 1, 4, 2)  # (B, st, bins, sf, cout)
        return y.reshape(batch, st, bins * sf, self.cout)[:, :, : self.out_freqs]


class DecoderBlock(nn.Module):
    """Upsample (time and frequency), join the encoder skip (concat or add), conv, [TDB]."""

    def __init__(
        self, cin: int, cout: int, stride: tuple[int, int], out_freqs: int, depth: int, slope: float, skip: str
    ):
        super().__init__()
        self.up = SubPixelUp(cin, cout, stride[0], stride[1], out_freqs)
        self.concat = skip == "concat"
        self.fuse = CausalConv2d(2 * cout if self.concat else cout, cout, (3, 3))
        self.tdb = TimeDilatedBlock(cout, depth, slope) if depth > 0 else None
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.act(self.up(x))[:, :, : skip.shape[2]]  # drop the frame past the end for odd lengths
        out = self.act(self.fuse(torch.cat([up, skip], dim=1) if self.concat else up + skip))
        return out if self.tdb is None else self.tdb(out)

    def step(self, up: Tensor, skip: Tensor, state: dict) -> Tensor:
        """One frame of the upsampled input and of the skip, (B, F, C) each -> (B, F, cout)."""
        joined = torch.cat([up, skip], dim=-1) if self.concat else up + skip
        out = self.act(self.fuse.step(joined, state))
        return out if self.tdb is None else self.tdb.step(out, state)


# ----------------------------------------------------------------------------------------------
# 3. The network
# ----------------------------------------------------------------------------------------------
class GSENet(nn.Module):
    """beamformer output + reference mic (waveforms) -> enhanced waveform, same length."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        widths = cfg.effective_widths
        slope = cfg.negative_slope
        self.stft = CausalSTFT(cfg.n_fft, cfg.hop)
        self.input_conv = CausalConv2d(cfg.in_channels, widths[0], (7, 7), lookahead=cfg.lookahead_frames)
        freqs = [cfg.n_freqs]  # frequency bins at each level, to mirror them exactly in the decoder
        for _ in range(5):
            freqs.append((freqs[-1] - 1) // cfg.freq_stride + 1)
        strides = [(cfg.time_strides[i], cfg.freq_stride) for i in range(5)]
        depth = cfg.dilation_depth
        self.encoders = nn.ModuleList(
            EncoderBlock(widths[i], widths[i + 1], strides[i], depth if cfg.encoder_tdb[i] else 0, slope)
            for i in range(5)
        )
        self.bottleneck = TimeDilatedBlock(widths[5], max(depth, 1), slope)
        self.decoders = nn.ModuleList(
            DecoderBlock(
                widths[i + 1],
                widths[i],
                strides[i],
                freqs[i],
                depth if cfg.decoder_tdb[i] else 0,
                slope,
                cfg.skip_connection,
            )
            for i in range(5)
        )
        self.output_conv = CausalConv2d(widths[0], 2, (7, 7))
        if cfg.output_mode == "residual_mask":  # identity at step 0: the mask is exactly 1
            nn.init.zeros_(self.output_conv.conv.weight)
            nn.init.zeros_(self.output_conv.conv.bias)
        self.act = nn.LeakyReLU(slope)

    # -- shared pieces of the offline and streaming paths ------------------------------------
    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: the STFT window minus one hop, plus any lookahead frames."""
        return self.cfg.n_fft - self.cfg.hop + self.cfg.lookahead_frames * self.cfg.hop

    def features(self, beam_spec: Tensor, ref_spec: Tensor) -> Tensor:
        """Complex spectra (B, T, F) -> network input (B, C, T, F): real/imag parts, compressed."""
        chosen = {"beam+ref": [beam_spec, ref_spec], "beam": [beam_spec], "ref": [ref_spec]}[self.cfg.inputs]
        parts = []
        for spec in chosen:
            spec = self.compress(spec)
            parts += [spec.real, spec.imag]
        return torch.stack(parts, dim=1)

    def compress(self, spec: Tensor) -> Tensor:
        c = self.cfg.compress_exponent
        if c == 1.0:
            return spec
        return spec * safe_magnitude(spec) ** (c - 1)

    def to_spectrum(self, out: Tensor, beam_spec: Tensor) -> Tensor:
        """Network output (B, 2, T, F) -> enhanced complex spectrum (B, T, F), in float32 (the convs
        may run in bf16 under autocast; the spectrum and inverse STFT stay in full precision)."""
        out = out.float()
        estimate = torch.complex(out[:, 0], out[:, 1])
        if self.cfg.output_mode == "residual_mask":
            return beam_spec + estimate * beam_spec  # (1 + net) * beam
        if self.cfg.output_mode == "mask":
            return estimate * beam_spec
        c = self.cfg.compress_exponent
        if c == 1.0:
            return estimate
        return estimate * safe_magnitude(estimate) ** (1 / c - 1)  # undo the input compression

    # -- offline ------------------------------------------------------------------------------
    def forward(self, beam: Tensor, ref: Tensor) -> Tensor:
        if beam.shape != ref.shape or beam.dim() != 2:
            raise ValueError(
                f"GSENet expects beam and ref of equal shape (batch, time), got {beam.shape} and {ref.shape}"
            )
        length = beam.shape[-1]
        beam_spec, ref_spec = self.stft(beam.float()), self.stft(ref.float())
        x = self.features(beam_spec, ref_spec)
        if torch.is_autocast_enabled("cpu"):
            # bf16 on CPU: channels-last activations (every conv follows its input's layout) spare
            # oneDNN's reorders to and from its blocked layout around each conv: 1.17x (1.12-1.27)
            # bf16 training at 1024/256; fp32 gained nothing measurable (0.95-1.09x), so it stays NCHW.
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.act(self.input_conv(x))
        x = self._unet(x, 0)
        return self.stft.inverse(self.to_spectrum(self.output_conv(x), beam_spec), length)

    def _unet(self, x: Tensor, level: int) -> Tensor:
        if level == 5:
            return self.bottleneck(x)
        skip, down = self.encoders[level](x)
        return self.decoders[level](self._unet(down, level + 1), skip)

    def streamer(self, batch_size: int = 1) -> GSENetStreamer:
        return GSENetStreamer(self, batch_size)


# ----------------------------------------------------------------------------------------------
# 4. Streaming: one hop in, one hop out
# ----------------------------------------------------------------------------------------------
class GSENetStreamer:
    """Runs a GSENet one hop at a time, keeping every conv's past frames as state.

    `step(beam_hop, ref_hop)` takes (B, hop) samples of each signal and returns (B, hop) enhanced
    samples delayed by `model.latency_samples` (the first ones are silence); `flush()` returns the
    rest. Concatenated, `stream[latency : latency + L]` equals `model(beam, ref)` (float rounding).
    Inside, a frame is (B, F, C), channels last (the offline layout is (B, C, T, F)), so that every
    one-frame conv is one GEMM over a strided view (`frame_conv`).
    """

    def __init__(self, model: GSENet, batch_size: int = 1):
        self.model, self.cfg = model, model.cfg
        self.batch_size = batch_size
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        n_fft, hop = self.cfg.n_fft, self.cfg.hop
        self.input_buffer = torch.zeros(batch_size, 2, n_fft, device=self.device, dtype=self.dtype)
        self.output_buffer = torch.zeros(batch_size, n_fft, device=self.device, dtype=self.dtype)
        self.norm_partial = torch.zeros(n_fft, device=self.device, dtype=self.dtype)
        self.state: dict = {}
        self.level_frames = [0] * 5  # frames seen so far at each encoder level
        self.upsampled: list[Tensor | None] = [None] * 5  # decoder upsampling cache per level
        self.pending_specs: list[Tensor] = []  # beam spectra waiting out the lookahead
        self.frames_in = 0
        self.ola_position = hop - n_fft  # original-signal index of output_buffer[0]

    @torch.inference_mode()
    def step(self, beam_hop: Tensor, ref_hop: Tensor) -> Tensor:
        hop = self.cfg.hop
        expected = (self.batch_size, hop)
        if tuple(beam_hop.shape) != expected or tuple(ref_hop.shape) != expected:
            raise ValueError(
                f"step expects beam and ref hops of shape {expected}, got {beam_hop.shape}, {ref_hop.shape}"
            )
        new = torch.stack([beam_hop, ref_hop], dim=1).to(self.device, self.dtype)
        self.input_buffer = torch.cat([self.input_buffer[:, :, hop:], new], dim=2)
        spec = torch.fft.rfft(self.input_buffer * self.model.stft.window, dim=-1)  # (B, 2, F)
        return self._push_frame(spec[:, 0], spec[:, 1])

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """Feed the zero-padded end (as the offline STFT does) and drain the lookahead."""
        hop, outputs = self.cfg.hop, []
        silence = torch.zeros(self.batch_size, hop, device=self.device, dtype=self.dtype)
        for _ in range(self.cfg.n_fft // hop - 1):
            outputs.append(self.step(silence, silence))
        zero = torch.zeros(self.batch_size, self.cfg.n_freqs, device=self.device, dtype=torch.complex64)
        for _ in range(self.cfg.lookahead_frames):  # offline pads features with zero frames
            outputs.append(self._push_frame(zero, zero, features_are_zero=True))
        return torch.cat(outputs, dim=1)

    def _push_frame(self, beam_spec: Tensor, ref_spec: Tensor, features_are_zero: bool = False) -> Tensor:
        model, cfg = self.model, self.cfg
        if features_are_zero:
            feats = torch.zeros(self.batch_size, cfg.n_freqs, cfg.in_channels, device=self.device, dtype=self.dtype)
        else:  # (B, C, 1, F) -> the streaming layout, channels last: (B, F, C)
            feats = model.features(beam_spec.unsqueeze(1), ref_spec.unsqueeze(1))[:, :, 0].transpose(1, 2)
        self.pending_specs.append(beam_spec)
        x = model.input_conv.step(feats, self.state)
        self.frames_in += 1
        if self.frames_in <= cfg.lookahead_frames:  # output frame t - lookahead is not defined yet
            return torch.zeros(self.batch_size, cfg.hop, device=self.device, dtype=self.dtype)
        current_beam = self.pending_specs.pop(0)
        x = self._unet_step(model.act(x), 0)
        out = model.output_conv.step(x, self.state).transpose(1, 2).unsqueeze(2)  # (B, 2, 1, F)
        spec = model.to_spectrum(out, current_beam.unsqueeze(1))
        return self._overlap_add(spec[:, 0])

    def _unet_step(self, x: Tensor, level: int) -> Tensor:
        if level == 5:
            return self.model.bottleneck.step(x, self.state)
        stride = self.cfg.time_strides[level]
        emit = self.level_frames[level] % stride == 0
        skip, down = self.model.encoders[level].step(x, self.state, emit)
        if down is not None:  # a new low-rate frame: run the levels below and upsample it
            deeper = self._unet_step(down, level + 1)
            decoder = self.model.decoders[level]
            self.upsampled[level] = decoder.act(decoder.up.step(deeper, self.state))  # (B, stride, F, C)
        up = self.upsampled[level][:, self.level_frames[level] % stride]
        self.level_frames[level] += 1
        return self.model.decoders[level].step(up, skip, self.state)

    def _overlap_add(self, spec: Tensor) -> Tensor:
        hop = self.cfg.hop
        frame = self.model.stft.frames_to_samples(spec.unsqueeze(1))[:, 0]  # (B, n_fft)
        self.output_buffer = self.output_buffer + frame
        window_sq = self.model.stft.window**2
        self.norm_partial = self.norm_partial + window_sq
        # The oldest hop of the buffer now has all its frames: emit it and shift.
        out = self.output_buffer[:, :hop] / self.norm_partial[:hop].clamp_min(1e-8)
        if self.ola_position < 0:  # samples before the signal started: silence, not window edges
            out[:, : min(hop, -self.ola_position)] = 0
        self.ola_position += hop
        self.output_buffer = F.pad(self.output_buffer[:, hop:], (0, hop))
        self.norm_partial = F.pad(self.norm_partial[hop:], (0, hop))
        return out


# ----------------------------------------------------------------------------------------------
# Introspection: parameters and MACs
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def scale_output(model: GSENet, gain: float) -> GSENet:
    """Multiply a residual- or plain-mask model's output by `gain`, exactly, in place.

    The mask is (1 + net) (or net) with net the output conv's (real, imag) channels, linear in its
    weights and bias: gain * (1 + net) = 1 + (gain * net + gain - 1), so the conv's weights and bias
    are scaled by `gain` and `gain - 1` is added to the real-part bias. Offline, streaming and
    exported paths all run this conv, so they change together. Why: the scale-invariant losses
    (SI-SDR and the scaled spectral terms) leave the output level free, and it drifts during
    training (pretrained:sim-w05 came out 27 dB louder than its beam input); SI-SDR, PESQ and STOI
    do not depend on it, a listener does."""
    if model.cfg.output_mode not in ("residual_mask", "mask"):
        raise ValueError(f"scale_output needs a mask output, got model.output_mode={model.cfg.output_mode!r}")
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain}")
    conv = model.output_conv.conv
    conv.weight.mul_(gain)
    conv.bias.mul_(gain)
    if model.cfg.output_mode == "residual_mask":
        conv.bias[0] += gain - 1
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_summary(cfg: ModelConfig) -> dict:
    """Parameters per block and multiply-accumulates per second of audio (convolutions only)."""
    model = GSENet(cfg).eval()
    macs: dict[str, int] = {}

    def hook(name: str):
        def count(module: nn.Module, inputs, output):
            kernel = math.prod(module.kernel_size) * module.in_channels // module.groups
            macs[name] = macs.get(name, 0) + output.numel() // output.shape[0] * kernel

        return count

    blocks = {"input_conv": model.input_conv, "bottleneck": model.bottleneck, "output_conv": model.output_conv}
    blocks.update({f"encoder{i + 1}": m for i, m in enumerate(model.encoders)})
    blocks.update({f"decoder{i + 1}": m for i, m in enumerate(model.decoders)})
    handles = []
    for name, block in blocks.items():
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                handles.append(module.register_forward_hook(hook(name)))
    seconds = 4  # long enough that the n_fft/hop - 1 frames over the padded end are negligible
    with torch.inference_mode():
        model(torch.zeros(1, seconds * cfg.sample_rate), torch.zeros(1, seconds * cfg.sample_rate))
    for handle in handles:
        handle.remove()
    order = ["input_conv"] + [f"encoder{i}" for i in range(1, 6)] + ["bottleneck"]
    order += [f"decoder{i}" for i in range(5, 0, -1)] + ["output_conv"]
    rows = [
        {"block": name, "params": count_parameters(blocks[name]), "macs_per_s": macs.get(name, 0) // seconds}
        for name in order
    ]
    return {
        "config": asdict(cfg),
        "widths": list(cfg.effective_widths),
        "params": count_parameters(model),
        "macs_per_s": sum(r["macs_per_s"] for r in rows),
        # A hop is buffered, then the output lags by n_fft - hop (+ lookahead): window + lookahead.
        "latency_ms": 1000 * (model.latency_samples + cfg.hop) / cfg.sample_rate,
        "blocks": rows,
    }
