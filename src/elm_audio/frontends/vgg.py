"""VGG-like spectrogram front-end: five blocks of 3x3 convolutions (ELU) and max-pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import compiled
from .base import (
    KERNEL_BLOCKS,
    N_MELS,
    FrontEnd,
    computing_dtype,
    maxima_and_winners,
    padded_filters,
    plain_forms,
    under_autograd,
)
from .fused import cannot_overflow
from .grad_mode import cpu_without_autocast

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

        Where nothing is trained, it is one product per few pooling windows (pooled_products):
        each window's 6 x 4 input values (the 3 x 3 kernel at its 4 x 2 positions) times a 24 x
        (8 x width) matrix holding the kernel at each position, maximized over the 8 positions
        while the products are in the cache. The conv-then-pool form wrote and re-read the whole
        unpooled map (memory-bound: a third of vgg's time for under 1% of its FLOPs); this
        one does 24/9 of the first layer's multiply-adds and never holds that map. Training in
        float32 or float64 on the CPU takes the same products (PooledProducts); under autocast,
        off the CPU, and while traced (``profile`` counts the architecture's FLOPs), the block is
        the convolution and the max-pool, a few frames at a time."""
        conv = self.convs[0]
        training = under_autograd(spec, conv.weight)
        if self._trace is not None or (training and (spec.requires_grad or not cpu_float_training(spec))):
            return self.first_block_conv(spec)
        fused = None if training else pooled_kernel_for(spec, conv.weight)
        if training:
            rows = PooledProducts.apply(spec, conv.weight, conv.bias)
        elif fused is not None:
            nans = not cannot_overflow(spec, [(conv.weight.reshape(conv.out_channels, -1), conv.bias)])
            rows = fused.pooled_max(F.pad(spec[:, 0], (1, 1, 1, 1)), conv.weight, conv.bias, POOLS[0], nans, spec.dtype)
        else:
            rows, _ = pooled_products(spec, conv.weight, conv.bias, winners=False)
        batch, frames, mels = spec.shape[0], spec.shape[2] // POOLS[0][0], spec.shape[3] // POOLS[0][1]
        pooled = rows.view(batch, frames, mels, -1).permute(0, 3, 1, 2)  # channels-last
        # in the layout the next convolution's weights are in (channels-last in bf16, see
        # precision.in_dtype), which oneDNN then takes without reordering; the kernel's map stays
        # channels-last in float32 too: vgg large's second convolution ran 1,062-1,070 ms on it
        # against 1,017 channels-first plus 120 for the copy (batch 2, an Intel Xeon with AMX)
        nxt = self.convs[1].weight
        channels_last = fused is not None or (nxt.is_contiguous(memory_format=torch.channels_last) and not nxt.is_contiguous())
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
        elif under_autograd(self.convs[i].weight) and cpu_float_training(h):
            pooled = max_pool(SameConv3x3.apply(h, self.convs[i].weight, self.convs[i].bias), POOLS[i])
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


def cpu_float_training(x: torch.Tensor) -> bool:
    """Whether layers computing on ``x`` train in float32 or float64 on the CPU (no autocast):
    where PooledProducts and SameConv3x3 replace oneDNN's backward kernels."""
    return cpu_without_autocast(x) and x.dtype in (torch.float32, torch.float64)


def pooled_window_kernels(weight: torch.Tensor) -> torch.Tensor:
    """The first block's filters (width, 1, 3, 3) at each of a pooling window's 4 x 2 positions:
    (6 x 4 input values, 8 positions x width), zero where a position's kernel leaves the window."""
    (pt, pf), (kt, kf) = POOLS[0], weight.shape[2:]
    width = weight.shape[0]
    kernels = weight.new_zeros(pt + kt - 1, pf + kf - 1, pt, pf, width)
    for a in range(pt):
        for b in range(pf):
            kernels[a : a + kt, b : b + kf, a, b] = weight[:, 0].permute(1, 2, 0)
    return kernels.reshape(-1, pt * pf * width)


def pooled_kernel_for(spec: torch.Tensor, weight: torch.Tensor) -> compiled.Kernel | None:
    """compiled.kernel(), whose pooled_max computes the first block without writing its map,
    where it takes spec (batch, 1, frames, mels): inference on the CPU in float32 or bf16 (not
    autocast: weights=trained's predictions keep the products), at least KERNEL_BLOCKS blocks of
    filters. vgg large, batch 2, an Intel Xeon with AMX: the first block 190 -> 49 ms in float32,
    109 -> 33 ms in bf16 (its map pooled from float32 sums, rounded once)."""
    if not (
        spec.device.type == "cpu"
        and spec.dtype in (torch.float32, torch.bfloat16)
        and computing_dtype(weight) == spec.dtype
        and spec.shape[0]
    ):
        return None
    fused = compiled.kernel()
    if fused is None or weight.shape[0] < KERNEL_BLOCKS * fused.block_filters or fused.pool_rows % POOLS[0][1]:
        return None
    return fused


def pooling_windows(spec: torch.Tensor) -> torch.Tensor:
    """Every pooling window's input values of spec (batch, 1, frames, mels), the convolution's
    'same' padding included: (batch x frames / 4 x mels / 2 rows, 6 x 4), a copy."""
    (pt, pf), (wt, wf) = POOLS[0], (POOLS[0][0] + 2, POOLS[0][1] + 2)
    padded = F.pad(spec[:, 0], (1, 1, 1, 1))
    return padded.unfold(1, wt, pt).unfold(2, wf, pf).reshape(-1, wt * wf)


def pooled_products(
    spec: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, winners: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first block's pooled map as rows (batch x frames / 4 x mels / 2, width), FIRST_BLOCK_VALUES
    of products at a time, and (``winners``) each maximum's position in its window (0-7, bytes;
    max_pool2d's: the first of equal values)."""
    windows, kernels = pooling_windows(spec), pooled_window_kernels(weight)
    positions, width = POOLS[0][0] * POOLS[0][1], weight.shape[0]
    step = max(1, FIRST_BLOCK_VALUES // kernels.shape[1])
    out, won = None, None
    for r0 in range(0, windows.shape[0], step):
        products = windows[r0 : r0 + step] @ kernels  # (rows, 8 x width)
        if out is None:  # in the products' dtype: bf16 under autocast (weights=trained's predictions)
            out = products.new_empty(windows.shape[0], width)
            won = torch.empty(out.shape, dtype=torch.uint8) if winners else None
        if won is None:
            torch.amax(products.view(-1, positions, width), dim=1, out=out[r0 : r0 + step])
            continue
        out[r0 : r0 + step], won[r0 : r0 + step] = maxima_and_winners(products.view(-1, positions, width))
    if bias is not None:
        out += bias  # a per-map constant commutes with the max
    return out, won


class PooledProducts(torch.autograd.Function):
    """pooled_products for training in float32 or float64 on the CPU: forward keeps each
    maximum's position in its window (a byte), not the products; backward builds each chunk's
    gradient of the products (the output's gradient at the position that won, zero elsewhere)
    and multiplies it with the chunk's windows for the kernels' gradient, which sums back into
    the filters'. The convolution and max_pool2d it replaces cost vgg large's step 0.8 s (batch
    2), most of it max_pool2d's indices over the channels-first unpooled map."""

    @staticmethod
    def forward(ctx, spec: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        out, won = pooled_products(spec, weight, bias, winners=True)
        ctx.save_for_backward(spec, won)
        ctx.weight_shape, ctx.has_bias = weight.shape, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        spec, won = ctx.saved_tensors
        windows = pooling_windows(spec)
        (pt, pf), (width, _, kt, kf) = POOLS[0], ctx.weight_shape
        grad_kernels = grad.new_zeros(windows.shape[1], pt * pf * width)
        step = max(1, FIRST_BLOCK_VALUES // grad_kernels.shape[1])
        for r0 in range(0, windows.shape[0], step):
            g, index = grad[r0 : r0 + step], won[r0 : r0 + step]
            per_product = g.new_zeros(g.shape[0], pt * pf, width).scatter_(1, index[:, None].long(), g[:, None])
            grad_kernels += windows[r0 : r0 + step].T @ per_product.view(g.shape[0], -1)
        grad_kernels = grad_kernels.view(pt + kt - 1, pf + kf - 1, pt, pf, width)
        grad_weight = sum(grad_kernels[a : a + kt, b : b + kf, a, b] for a in range(pt) for b in range(pf))
        return None, grad_weight.permute(2, 0, 1).unsqueeze(1), grad.sum(0) if ctx.has_bias else None


class SameConv3x3(torch.autograd.Function):
    """A 3 x 3 'same' convolution for training in float32 or float64 on the CPU: the input's
    gradient is itself a 'same' convolution, of the output's gradient with the filters'
    channels swapped and their offsets reversed, through oneDNN's forward kernel (vgg large's
    second block, batch 2: 1.02 s against 1.32 s for its backward-data kernel); the filters'
    and bias's gradients are oneDNN's."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(h, weight, bias, padding=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, weight = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad
        grad_h = F.conv2d(grad, weight.transpose(0, 1).flip(2, 3), None, padding=1) if need_h else None
        _, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, h, weight, [weight.shape[0]] if ctx.has_bias else None,
            [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, need_w, need_b and ctx.has_bias],
        )  # fmt: skip
        return grad_h, grad_w, grad_b


assert N_MELS == 2 * 3 * 2 * 2 * 4  # the pools reduce the 96 bands to one
