"""VGG-like spectrogram front-end: five blocks of 3x3 convolutions (ELU) and max-pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import N_MELS, FrontEnd

# (time, frequency) pool of each block: 1,376 x 96 -> 1 x 1
POOLS = ((4, 2), (4, 3), (5, 2), (4, 2), (4, 4))


class VGG(FrontEnd):
    input_kind = "spectrogram"

    def __init__(self, width: int):
        super().__init__()
        channels = [1] + [width] * len(POOLS)
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, kernel_size=3, padding=1) for cin, cout in zip(channels, channels[1:])
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)  # (batch, 1, frames, mels)
        means = []
        for i, (conv, pool) in enumerate(zip(self.convs, POOLS), start=1):
            h = F.max_pool2d(F.elu_(conv(h)), pool)
            means.append(self.tap(f"pool{i}", h))
        return torch.cat(means, dim=1)


assert N_MELS == 2 * 3 * 2 * 2 * 4  # the pools reduce the 96 bands to one
