"""Convolutions and products whose ReLU oneDNN applies as it writes their output (a post-op),
for the CPU outside autograd.

A ReLU of its own reads and writes the whole map again, and torch's elementwise kernels run
bf16 at a third of float32's rate per value: on an Intel Xeon with AMX, sample_level large's
stem (2 clips, 116,666 x 512 outputs) took 118 ms as a product and a ReLU in bf16, 19 ms
fused (float32: 91 and 35 ms); its first block's convolution 259 ms, 179 fused. The fused ops
are the ones torch's own compiler emits for the CPU (``torch.ops.mkldnn``); where a build
lacks them, under autograd, off the CPU, and on profile's empty batch (whose FLOPs it counts
from the ops it sees), the layer is the plain op and ``F.relu_``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import under_autograd


def _fused(x: torch.Tensor, weight: torch.Tensor, op: str) -> bool:
    return (
        x.device.type == "cpu"
        and x.numel() > 0
        and x.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, op)
        and not under_autograd(x, weight)
    )


def relu_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """relu(x @ weight.T + bias) for x (..., k) and weight (m, k)."""
    if _fused(x, weight, "_linear_pointwise"):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")
    return F.relu_(F.linear(x, weight, bias))


def relu_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]) -> torch.Tensor:
    """relu(conv2d(x, weight, bias, padding)), stride 1, in the layout oneDNN gives conv2d's."""
    if _fused(x, weight, "_convolution_pointwise"):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, list(padding), [1, 1], [1, 1], 1, "relu", [], "")
    return F.relu_(F.conv2d(x, weight, bias, padding=padding))
