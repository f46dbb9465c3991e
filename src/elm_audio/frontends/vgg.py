"""VGG-like spectrogram front-end: five blocks of 3x3 convolutions (ELU) and max-pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import N_MELS, FrontEnd, padded_filters, plain_forms, under_autograd

# (time, frequency) pool of each block: 1,376 x 96 -> 1 x 1
POOLS = ((4, 2), (4, 3), (5, 2), (4, 2), (4, 4))
# Under autograd (and while traced) the first block's map (width x 1,376 x 96) is computed
# this many frames at a time.
FIRST_BLOCK_CHUNK = 32
# Otherwise it is computed some pooling windows at a time, the products of this many values
# (4 MB in float32) maximized while they are in the cache. Each chunk costs a product call and
# a max call: vgg large's first block, batch of two, took on a Zen 4 320 ms in float32 at 1 << 16
# (256 KB), 216 ms at 1 << 19, 210 at 1 << 20, 235 at 1 << 22 (in bf16 the whole network 1.18 s
# at 1 << 16, 1.07 s at 1 << 19); on an Intel Xeon with AMX (2 MB of L2 a core against 1) 153
# ms at 1 << 19, 144-154 at 1 << 20, 135-141 at 1 << 21 and 22, 163 at 1 << 23 (bf16: 104, 90-94,
# 79-84, 99).
FIRST_BLOCK_VALUES = 1 << 20


def max_pool(h: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
    """Non-overlapping max-pool, floor mode (as max_pool2d). Under autograd, and on
    channels-last maps (what oneDNN's convolutions return in bf16, and the plain forms' maps),
    it is max_pool2d: its backward sends each gradient to the index kept, where amax's
    compares the whole map with the maximum (half of a training step of vgg small); on
    channels-last maps its kernel runs along the channels (vgg large's second block, 2 clips:
    9 ms against 88 for amax over a reshaped copy). On channels-first maps, an amax over a
    reshaped view, which computes no indices (30 ms against 40)."""
    if under_autograd(h) or (h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous()):
        return F.max_pool2d(h, pool)
    pt, pf = pool
    b, c, t, f = h.shape
    h = h[:, :, : t // pt * pt, : f // pf * pf]
    return h.reshape(b, c, t // pt, pt, f // pf, pf).amax(dim=(3, 5))


class VGG(FrontEnd):
    """Each block is conv 3x3 (same), ELU, max-pool. ELU is increasing, so it commutes with the
    max-pool and is applied to the pooled map. The first block, a one-channel convolution whose
    output is the largest map, is pooled as it is computed (``first_block``), so that map is
    never held whole (it would be 380 MB a clip at the large size). That is the CPU's form:
    where layers take their plain forms (CUDA, see ``base.plain_forms``) the first block is
    a convolution and a max-pool like the others, on channels-last maps, the layout cuDNN's
    tensor-core kernels take without reordering."""

    input_kind = "spectrogram"

    def __init__(self, width: int):
        super().__init__()
        channels = [1] + [width] * len(POOLS)
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, kernel_size=3, padding=1) for cin, cout in zip(channels, channels[1:])
        )

    def first_block(self, spec: torch.Tensor) -> torch.Tensor:
        """The first block's pooled map (before ELU): (batch, width, frames / 4, mels / 2).

        Where nothing is trained, it is one product per few pooling windows: each window's
        6 x 4 input values (the 3 x 3 kernel at its 4 x 2 positions) times a 24 x (8 x width)
        matrix holding the kernel at each position, maximized over the 8 positions while the
        products are in the cache. The conv-then-pool form wrote and re-read the whole
        unpooled map (memory-bound: a third of vgg's time for under 1% of its FLOPs); this
        one does 24/9 of the first layer's multiply-adds and never holds that map. Under
        autograd, and while traced (``profile`` counts the architecture's FLOPs), the block is
        the convolution and the max-pool, a few frames at a time."""
        conv = self.convs[0]
        if self._trace is not None or under_autograd(conv.weight):
            return self.first_block_conv(spec)
        (pt, pf), (kt, kf) = POOLS[0], conv.kernel_size
        wt, wf = pt + kt - 1, pf + kf - 1  # a pooling window's input: 6 x 4 values
        weight = conv.weight[:, 0]  # (width, 3, 3)
        width = weight.shape[0]
        kernels = weight.new_zeros(wt, wf, pt, pf, width)
        for a in range(pt):
            for b in range(pf):
                kernels[a : a + kt, b : b + kf, a, b] = weight.permute(1, 2, 0)
        kernels = kernels.reshape(wt * wf, pt * pf * width)
        padded = F.pad(spec[:, 0], (1, 1, 1, 1))  # the conv's 'same' padding
        windows = padded.unfold(1, wt, pt).unfold(2, wf, pf)  # (batch, frames/4, mels/2, 6, 4)
        batch, frames, mels = windows.shape[:3]
        windows = windows.reshape(-1, wt * wf)
        out = None
        step = max(1, FIRST_BLOCK_VALUES // kernels.shape[1])
        for r0 in range(0, windows.shape[0], step):
            products = windows[r0 : r0 + step] @ kernels  # (rows, 8 x width)
            if out is None:  # in the products' dtype: bf16 under autocast (weights=trained's predictions)
                out = products.new_empty(windows.shape[0], width)
            torch.amax(products.view(-1, pt * pf, width), dim=1, out=out[r0 : r0 + step])
        if conv.bias is not None:
            out += conv.bias  # a per-map constant commutes with the max
        pooled = out.view(batch, frames, mels, width).permute(0, 3, 1, 2)  # channels-last
        # in the layout the next convolution's weights are in (channels-last in bf16, see
        # precision.in_dtype), which oneDNN then takes without reordering
        nxt = self.convs[1].weight
        channels_last = nxt.is_contiguous(memory_format=torch.channels_last) and not nxt.is_contiguous()
        return pooled.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def first_block_conv(self, spec: torch.Tensor) -> torch.Tensor:
        conv, pool = self.convs[0], POOLS[0]
        step = FIRST_BLOCK_CHUNK - FIRST_BLOCK_CHUNK % pool[0]
        padded = F.pad(spec, (1, 1, 1, 1))  # the conv's 'same' padding, applied once
        frames = spec.shape[2] // pool[0] * pool[0]
        pooled = [
            max_pool(F.conv2d(padded[:, :, t0 : min(t0 + step, frames) + 2], conv.weight, conv.bias), pool)
            for t0 in range(0, frames, step)
        ]
        return torch.cat(pooled, dim=2)

    def block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Block ``i`` (from 0) on (batch, channels, frames, mels) maps: conv, max-pool, ELU. In
        the plain forms the maps carry zero channels up to a multiple of 8 (``padded_filters``)
        from block to block."""
        if plain_forms(h):
            weight, bias = padded_filters(self.convs[i].weight, self.convs[i].bias, in_channels=h.shape[1])
            h = F.conv2d(h, weight.contiguous(memory_format=torch.channels_last), bias, padding=1)
            pooled = max_pool(h, POOLS[i]).contiguous(memory_format=torch.channels_last)  # amax writes channels-first
        elif i == 0:
            pooled = self.first_block(h)
        else:
            pooled = max_pool(self.convs[i](h), POOLS[i])
        # in place where nothing is trained; autograd needs the max-pool's own output
        return F.elu(pooled) if under_autograd(pooled) else F.elu_(pooled)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, 1, frames, mels); in the plain forms with channels-last strides, which a
        # one-channel map's default ones do not say, so that cuDNN computes channels-last
        h = x.unsqueeze(-1).permute(0, 3, 1, 2) if plain_forms(x) else x.unsqueeze(1)
        means = []
        for i in range(len(self.convs)):
            h = self.block(i, h)
            means.append(self.tap(f"pool{i + 1}", h[:, : self.convs[i].out_channels]))  # without padded_filters' maps
        return torch.cat(means, dim=1)


assert N_MELS == 2 * 3 * 2 * 2 * 4  # the pools reduce the 96 bands to one
