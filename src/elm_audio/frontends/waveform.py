"""Waveform front-ends: sample-level (Lee et al.), frame-level, and frame-level with many
filter lengths, the last two followed by the residual back-end that makes them as deep."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import shown
from .base import FrontEnd, pad_same, under_autograd
from .fused import cannot_overflow, relu_amax, relu_conv2d, relu_linear
from .grad_mode import cpu_without_autocast


class SampleLevel(FrontEnd):
    """Conv 3 stride 3 (valid); then ``blocks`` x (conv 3 same, ReLU, max-pool 3).

    The maps are kept channels-last, (batch, positions, channels) in memory, where oneDNN's
    convolutions need no reordering (1.4x faster than 1-D convolutions on channels-first maps
    here) and a max-pool over three positions is a maximum over a reshaped view.
    """

    input_kind = "waveform"

    def __init__(self, width: int, blocks: int = 6):
        super().__init__()
        self.stem = nn.Conv1d(1, width, kernel_size=3, stride=3)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, kernel_size=3, padding=1) for _ in range(blocks))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, positions, channels): the first 3 x (input // 3) samples, three to a row
        frames = x[:, : x.shape[1] // 3 * 3].unflatten(1, (-1, 3))
        # only where the ReLU can be fused: training would pass over the weights for nothing
        layers = [(self.stem.weight, self.stem.bias), *((c.weight, c.bias) for c in self.convs)]
        in_range = not under_autograd(x, self.stem.weight) and cannot_overflow(x, layers)
        h = relu_linear(frames, self.stem.weight[:, 0], self.stem.bias, in_range)
        means = [self.tap("conv0", h.transpose(1, 2))]
        for i, conv in enumerate(self.convs, start=1):
            # each step frees the previous map: at most two 116,666-long maps live at once
            h = _trained_block(h, conv) if under_autograd(h, conv.weight) else _block(h, conv, in_range)
            means.append(self.tap(f"pool{i}", h.transpose(1, 2)))
        return torch.cat(means, dim=1)


def _block(h: torch.Tensor, conv: nn.Conv1d, in_range: bool) -> torch.Tensor:
    """Conv 3 same, ReLU (fused where ``in_range``: fused.cannot_overflow), max-pool 3 of
    (batch, positions, channels) maps; in range, relu_amax's (bf16 2.3x amax's rate)."""
    h = same_conv3(h, conv.weight, conv.bias, relu=True, in_range=in_range)
    windows = h[:, : h.shape[1] // 3 * 3].unflatten(1, (-1, 3))
    return relu_amax(windows, 2) if in_range else windows.amax(2)


def _trained_block(h: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """_block under autograd (weights=trained): the same outputs, in forms whose backward is
    cheap. max_pool2d's backward follows the indices it kept, where amax's compared the whole
    map with its maximum; the ReLU, which commutes with the maximum, acts on the pooled map, a
    third of the full one, forward and backward (sample_level large: 0.5 s of a 7 s step);
    float32 on the CPU takes WindowProduct's backward."""
    h = (WindowProduct.apply if cpu_without_autocast(h) else same_conv3)(h, conv.weight, conv.bias)
    return F.relu(F.max_pool2d(h.transpose(1, 2).unsqueeze(2), (1, 3)).squeeze(2).transpose(1, 2))


def same_conv3(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False, in_range: bool = False
) -> torch.Tensor:
    """A 3-wide 'same' convolution of (batch, positions, channels) maps, in that layout, and
    its ReLU (``relu``: fused where ``in_range`` allows, fused.relu_conv2d)."""
    image = h.transpose(1, 2).unsqueeze(2)  # (batch, channels, 1, positions), channels-last
    if relu:
        out = relu_conv2d(image, weight.unsqueeze(2), bias, padding=(0, 1), in_range=in_range)
    else:
        out = F.conv2d(image, weight.unsqueeze(2), bias, padding=(0, 1))
    return out.squeeze(2).transpose(1, 2)  # back to (batch, positions, channels), no copy


class WindowProduct(torch.autograd.Function):
    """same_conv3 for float32 training on the CPU: the same forward; a backward through oneDNN's
    forward kernels and plain products, where oneDNN's backward on these channels-last maps ran
    at a third of the forward's rate (56 against 190 GFLOP/s at 512 channels). The input's
    gradient is itself a 'same' convolution; the filters' gradient one product per clip and
    offset over views of the maps. Neither copies a map's windows (1.4 GB at 512 channels in the
    first block), which the products of every window had cost: 1.27x faster than those."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return same_conv3(h, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, weight = ctx.saved_tensors
        # position u's gradient reaches input u + o - 1 through offset o: a convolution of the
        # gradient with the filters' channels swapped and their offsets reversed
        grad_h = same_conv3(grad, weight.transpose(0, 1).flip(-1), None)
        grad_weight = torch.zeros_like(weight)
        length = h.shape[1]
        for o in range(3):
            first, last = max(0, 1 - o), min(length, length + 1 - o)  # outputs whose input is in the map
            for clip_grad, clip in zip(grad, h):
                grad_weight[:, :, o] += clip_grad[first:last].T @ clip[first + o - 1 : last + o - 1]
        return grad_h, grad_weight, grad.sum((0, 1)) if ctx.has_bias else None


BACKEND_MEANS = ("per_channel", "per_layer")


class BackEnd(nn.Module):
    """(1) conv 7 (valid) over all input channels; (2) conv 7 (padded 3) + residual to (1);
    max-pool 2; (3) conv 7 (padded 3) + residual to the pooled map. All ReLU.

    ``means``: ``per_channel`` (the method) or ``per_layer`` (the original code's one value per
    layer, see FrontEnd.tap)."""

    def __init__(self, in_channels: int, width: int, means: str = "per_channel"):
        super().__init__()
        if means not in BACKEND_MEANS:
            raise ValueError(f"frontend.net.backend_means={shown(means)} is not one of {', '.join(BACKEND_MEANS)}")
        self.per_layer = means == "per_layer"
        self.conv1 = nn.Conv1d(in_channels, width, kernel_size=7)
        self.conv2 = nn.Conv1d(width, width, kernel_size=7, padding=3)
        self.conv3 = nn.Conv1d(width, width, kernel_size=7, padding=3)

    def forward(self, h: torch.Tensor, tap) -> list[torch.Tensor]:
        c1 = F.relu_(self.conv1(h))
        means = [tap("backend_conv1", c1, self.per_layer)]
        r2 = F.relu_(self.conv2(c1)) + c1
        means.append(tap("backend_res2", r2, self.per_layer))
        pooled = F.max_pool1d(r2, 2)
        r3 = F.relu_(self.conv3(pooled)) + pooled
        means.append(tap("backend_res3", r3, self.per_layer))
        return means


class FrameLevel(FrontEnd):
    """Conv 512 stride 32 (valid), ReLU; then the back-end."""

    input_kind = "waveform"

    def __init__(self, width: int, length: int = 512, stride: int = 32, backend_means: str = "per_channel"):
        super().__init__()
        self.frame = nn.Conv1d(1, width, kernel_size=length, stride=stride)
        self.backend = BackEnd(width, width, backend_means)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu_(self.frame(x.unsqueeze(1)))
        means = [self.tap("frame_conv", h)]
        means += self.backend(h, self.tap)
        return torch.cat(means, dim=1)


class FrameLevelMany(FrontEnd):
    """Parallel convs of several lengths, stride 32, same padding, concatenated; then the back-end."""

    input_kind = "waveform"

    def __init__(
        self,
        width: int,
        lengths: Sequence[int] = (512, 256, 128, 64, 32),
        stride: int = 32,
        backend_means: str = "per_channel",
    ):
        super().__init__()
        self.frames = nn.ModuleList(nn.Conv1d(1, width, kernel_size=n, stride=stride) for n in lengths)
        self.backend = BackEnd(width * len(lengths), width, backend_means)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        wave = x.unsqueeze(1)
        maps, means = [], []
        for conv in self.frames:
            (length,), (stride,) = conv.kernel_size, conv.stride
            h = F.relu_(conv(pad_same(wave, length, stride)))
            means.append(self.tap(f"frame_conv_{length}", h))
            maps.append(h)
        means += self.backend(torch.cat(maps, dim=1), self.tap)
        return torch.cat(means, dim=1)
