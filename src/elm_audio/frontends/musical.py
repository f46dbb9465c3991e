"""Musically motivated front-ends (Pons et al.): vertical "timbral" filters and 1-D
"temporal" filters over the spectrogram's energy envelope, alone or side by side."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import N_MELS, FrontEnd, frequency_max_conv, one_channel_conv1d, pad_same

# (frames, share of the 96 bands, width multiple): heights int(0.9 * 96) = 86, int(0.4 * 96) = 38
TIMBRAL_FILTERS = ((7, 0.9, 1), (3, 0.9, 2), (1, 0.9, 4), (7, 0.4, 1), (3, 0.4, 2), (1, 0.4, 4))


class Musical(FrontEnd):
    """One wide layer of timbral and/or temporal filters.

    Timbral: each filter spans ``frames`` x ``bands`` (time zero-padded to keep the length),
    ReLU, then max-pooled over all remaining frequency positions. Temporal: the mean over the
    96 bands gives an energy envelope; 1-D convolutions (same padding), ReLU, with
    n-r, 2n-r, 4n-r, 8n-r filters where r = n/4, so timbral and temporal have similar weight.
    """

    input_kind = "spectrogram"

    def __init__(
        self,
        width: int,
        timbral: bool,
        temporal_lengths: Sequence[int],
    ):
        super().__init__()
        if not timbral and not temporal_lengths:
            raise ValueError("a musical front-end needs timbral filters, temporal lengths or both")
        self.timbral = nn.ModuleList()
        if timbral:
            for frames, share, mult in TIMBRAL_FILTERS:
                bands = int(share * N_MELS)
                self.timbral.append(nn.Conv2d(1, width * mult, kernel_size=(frames, bands)))
        remove = width // 4
        self.temporal = nn.ModuleList(
            nn.Conv1d(1, width * 2**i - remove, kernel_size=length)
            for i, length in enumerate(temporal_lengths)
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        means = []
        for conv in self.timbral:
            frames, bands = conv.kernel_size
            # time padded to keep the length; max over every frequency position left
            h = frequency_max_conv(x, conv, pad_time=(frames - 1) // 2, relu=True)
            means.append(self.tap(f"timbral_{frames}x{bands}", h))
        if len(self.temporal):
            envelope = x.mean(dim=-1).unsqueeze(1)  # (batch, 1, frames)
            for conv in self.temporal:
                (length,) = conv.kernel_size
                h = F.relu_(one_channel_conv1d(pad_same(envelope, length), conv))
                means.append(self.tap(f"temporal_{length}", h))
        return torch.cat(means, dim=1)
