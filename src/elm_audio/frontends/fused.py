"""Convolutions and products whose ReLU oneDNN applies as it writes their output (a post-op),
for the CPU outside autograd.

A ReLU of its own reads and writes the whole map again, and torch's elementwise kernels run
bf16 at a third of float32's rate per value: on an Intel Xeon with AMX, sample_level large's
stem (2 clips, 116,666 x 512 outputs) took 118 ms as a product and a ReLU in bf16, 19 ms
fused (float32: 91 and 35 ms); its first block's convolution 259 ms, 179 fused. The fused ops
are the ones torch's own compiler emits for the CPU (``torch.ops.mkldnn``).

oneDNN's ReLU turns NaN into 0 where ``F.relu`` keeps it, and in a network of finite weights
fed finite samples a NaN arises only from a sum that overflowed (inf - inf): fused, an
overflow would leave finite features that extraction could not report. So a caller fuses only
where ``cannot_overflow`` proves no sum can leave the floating-point range. Where it cannot,
where a build lacks the ops, under autograd, off the CPU, and on profile's empty batch (whose
FLOPs it counts from the ops it sees), each layer is the plain op and ``F.relu_``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .grad_mode import under_autograd


def cannot_overflow(x: torch.Tensor, layers: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> bool:
    """Whether no partial sum of a chain of layers with these (weight, bias) pairs, each
    followed by ReLU or max-pooling (neither makes a value larger), can reach half of x's
    dtype's largest value from input x: a layer's sums are at most its largest row sum of
    |weight| times its input's largest magnitude, plus its largest |bias|. A NaN or infinite
    input fails the test. Cheap: one pass over x and over the weights. Off the CPU (where
    nothing is fused, and the meta device holds no values) the answer is no."""
    if x.device.type != "cpu" or not x.numel():
        return False
    with torch.no_grad():
        bound = float(x.abs().amax())
        for weight, bias in layers:
            bound = float(weight.abs().flatten(1).sum(1, dtype=torch.float32).amax()) * bound
            bound += 0.0 if bias is None else float(bias.abs().amax())
    return bound < torch.finfo(x.dtype).max / 2


def _fused(x: torch.Tensor, weight: torch.Tensor, op: str, in_range: bool) -> bool:
    return (
        in_range
        and x.device.type == "cpu"
        and x.numel() > 0
        and x.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, op)
        and not under_autograd(x, weight)
    )


def relu_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, in_range: bool) -> torch.Tensor:
    """relu(x @ weight.T + bias) for x (..., k) and weight (m, k); fused where ``in_range``
    (the caller's ``cannot_overflow``) allows."""
    if _fused(x, weight, "_linear_pointwise", in_range):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")
    return F.relu_(F.linear(x, weight, bias))


def relu_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int], in_range: bool
) -> torch.Tensor:
    """relu(conv2d(x, weight, bias, padding)), stride 1, in the layout oneDNN gives conv2d's;
    fused where ``in_range`` (the caller's ``cannot_overflow``) allows."""
    if _fused(x, weight, "_convolution_pointwise", in_range):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, list(padding), [1, 1], [1, 1], 1, "relu", [], "")
    return F.relu_(F.conv2d(x, weight, bias, padding=padding))


# a float dtype's bits read as the signed integer of the same width
SAME_WIDTH_INTEGER = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def relu_amax(values: torch.Tensor, dim: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """torch.amax(values, dim) of a ReLU's outputs that hold no NaN (the caller's
    ``cannot_overflow`` proved every sum finite), as the maximum of their bits read as signed
    integers: a non-negative float's bits, so read, order as its value (-0.0, which a fused
    ReLU writes for a negative sum, reads as the smallest and equals 0.0), and the integer
    kernel compares them as they lie, where bf16's amax converts each value to float32 and
    back. On an Intel Xeon with AMX, bf16: 4-6x faster in the cache (timbral_temporal's 59
    offsets, sample_level's pools of three), 2.3x from memory; float32 1.1-1.3x."""
    integer = SAME_WIDTH_INTEGER.get(values.dtype)
    if integer is None:
        return torch.amax(values, dim, out=out)
    if out is not None:
        torch.amax(values.view(integer), dim, out=out.view(integer))
        return out
    return torch.amax(values.view(integer), dim).view(values.dtype)
