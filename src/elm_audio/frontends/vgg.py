"""VGG-like spectrogram front-end: five blocks of 3x3 convolutions (ELU) and max-pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import N_MELS, FrontEnd

# (time, frequency) pool of each block: 1,376 x 96 -> 1 x 1
POOLS = ((4, 2), (4, 3), (5, 2), (4, 2), (4, 4))
# The first block's map (width x 1,376 x 96) is computed this many frames at a time.
FIRST_BLOCK_CHUNK = 32


def max_pool(h: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
    """Non-overlapping max-pool, floor mode (as max_pool2d), without computing indices."""
    pt, pf = pool
    b, c, t, f = h.shape
    h = h[:, :, : t // pt * pt, : f // pf * pf]
    return h.reshape(b, c, t // pt, pt, f // pf, pf).amax(dim=(3, 5))


class VGG(FrontEnd):
    """Each block is conv 3x3 (same), ELU, max-pool. ELU is increasing, so it commutes with the
    max-pool and is applied to the pooled map. The first block, a one-channel convolution whose
    output is the largest map, is computed a few frames at a time and pooled at once, so that
    map is never held whole (it would be 380 MB a clip at the large size)."""

    input_kind = "spectrogram"

    def __init__(self, width: int):
        super().__init__()
        channels = [1] + [width] * len(POOLS)
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, kernel_size=3, padding=1) for cin, cout in zip(channels, channels[1:])
        )

    def first_block(self, spec: torch.Tensor) -> torch.Tensor:
        conv, pool = self.convs[0], POOLS[0]
        step = FIRST_BLOCK_CHUNK - FIRST_BLOCK_CHUNK % pool[0]
        padded = F.pad(spec, (1, 1, 1, 1))  # the conv's 'same' padding, applied once
        frames = spec.shape[2] // pool[0] * pool[0]
        pooled = [
            max_pool(F.conv2d(padded[:, :, t0 : min(t0 + step, frames) + 2], conv.weight, conv.bias), pool)
            for t0 in range(0, frames, step)
        ]
        return torch.cat(pooled, dim=2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)  # (batch, 1, frames, mels)
        means = []
        for i, (conv, pool) in enumerate(zip(self.convs, POOLS), start=1):
            pooled = self.first_block(h) if i == 1 else max_pool(conv(h), pool)
            # in place where nothing is trained; autograd needs the max-pool's own output
            h = F.elu(pooled) if torch.is_grad_enabled() and pooled.requires_grad else F.elu_(pooled)
            means.append(self.tap(f"pool{i}", h))
        return torch.cat(means, dim=1)


assert N_MELS == 2 * 3 * 2 * 2 * 4  # the pools reduce the 96 bands to one
