"""One-layer spectrogram front-ends: a 7-frame filter over all (7x96) or most (7x86) bands."""

from __future__ import annotations

import torch
from torch import nn

from .base import N_MELS, FrontEnd, frequency_max_conv


class SingleLayer(FrontEnd):
    """One convolution of ``frames`` x ``bands`` (valid), ReLU, then a max-pool over all the
    frequency positions left (a 1 x 11 pool for 86 of 96 bands; none for 96)."""

    input_kind = "spectrogram"

    def __init__(self, width: int, frames: int = 7, bands: int = N_MELS):
        super().__init__()
        if not 1 <= bands <= N_MELS:
            raise ValueError(f"bands must be between 1 and {N_MELS}, got {bands}")
        self.conv = nn.Conv2d(1, width, kernel_size=(frames, bands))
        self.freq_positions = N_MELS - bands + 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, filters, frames, 1): the conv's single frequency position, or the 1 x 11 pool's
        h = frequency_max_conv(x, self.conv, relu=True).unsqueeze(-1)
        return self.tap("conv" if self.freq_positions == 1 else "pool", h)
