"""Band-limited resampling in torch, on the tensor's device (soxr, used when decoding files,
runs on the CPU on numpy arrays only).

A windowed-sinc polyphase resampler: with the rates reduced to ``orig`` input and ``new`` output
samples per period, output sample ``f * new + j`` lies at input position ``f * orig + j * orig /
new``; each of the ``new`` phases has its own kernel (a Kaiser-windowed sinc low-pass at
``rolloff`` of the lower Nyquist frequency), applied as a strided 1-D convolution. Long signals
are processed a block of periods at a time, so memory does not grow with the kernel's length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Zero crossings of the sinc on each side, and the Kaiser window's beta: about 100 dB stop-band.
ZERO_CROSSINGS = 32
KAISER_BETA = 10.0
ROLLOFF = 0.94
# Output periods computed per convolution call (bounds the convolution's working memory).
BLOCK_PERIODS = 8192


class Resampler(nn.Module):
    """(batch, samples) at ``orig_rate`` -> (batch, ceil(samples * new_rate / orig_rate)) at ``new_rate``."""

    def __init__(self, orig_rate: int, new_rate: int, rolloff: float = ROLLOFF):
        super().__init__()
        g = math.gcd(int(orig_rate), int(new_rate))
        self.orig, self.new = int(orig_rate) // g, int(new_rate) // g
        cutoff = 0.5 * min(self.orig, self.new) / self.orig * rolloff  # cycles per input sample
        half_width = ZERO_CROSSINGS / (2 * cutoff)  # the kernel's half length, in input samples
        self.width = math.ceil(half_width)
        taps = torch.arange(self.orig + 2 * self.width, dtype=torch.float64)
        phase = torch.arange(self.new, dtype=torch.float64)[:, None] * self.orig / self.new
        tau = phase + self.width - taps  # (new, taps): input sample -> output position distance
        ratio = (tau / half_width).clamp(-1, 1)
        window = torch.special.i0(KAISER_BETA * torch.sqrt(1 - ratio**2)) / torch.special.i0(torch.tensor(KAISER_BETA, dtype=torch.float64))
        kernel = 2 * cutoff * torch.sinc(2 * cutoff * tau) * window * (tau.abs() <= half_width)
        self.register_buffer("kernel", kernel[:, None, :], persistent=False)

    def output_length(self, n_samples: int) -> int:
        return -(-n_samples * self.new // self.orig)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.orig == self.new:
            return x
        n_out = self.output_length(x.shape[-1])
        periods = -(-n_out // self.new)
        kernel = self.kernel.to(x.device, x.dtype)
        taps = kernel.shape[-1]
        right = max(0, (periods - 1) * self.orig + taps - x.shape[-1] - self.width)
        padded = F.pad(x.unsqueeze(1), (self.width, right))
        blocks = []
        for p0 in range(0, periods, BLOCK_PERIODS):
            p1 = min(p0 + BLOCK_PERIODS, periods)
            part = padded[..., p0 * self.orig : (p1 - 1) * self.orig + taps]
            y = F.conv1d(part, kernel, stride=self.orig)  # (batch, new, p1 - p0)
            blocks.append(y.transpose(1, 2).reshape(x.shape[0], -1))
        return torch.cat(blocks, dim=1)[:, :n_out]
