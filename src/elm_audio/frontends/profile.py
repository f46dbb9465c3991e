"""What a front-end is and costs, measured by tracing it on an empty batch (no memory, no time)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .base import FrontEnd
from .imported import Imported

CONVOLUTIONS = {F.conv1d, F.conv2d}
PRODUCTS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.bmm}


class FlopCount(TorchFunctionMode):
    """Multiply-adds x 2 of one clip through every convolution and product (the count torch's
    FlopCounterMode gives: tests/test_frontends.py checks every front-end against it), from the
    output's shape without its first (batch) axis. A mode at the level of torch's functions, on
    an empty batch, rather than FlopCounterMode on the meta device: that one loads torch's
    compiler (1.5 s of every run's start) for shapes an empty batch gives at once.

    ``products`` lists each as the 2-D product it amounts to for one clip, (rows, inner,
    outputs): a convolution's rows are its output positions, its inner dimension a filter's
    values, its outputs the filters (benchmarks/product_bound.py times products of these shapes)."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[tuple[int, int, int]] = []

    @property
    def total(self) -> int:
        return sum(2 * rows * inner * outputs for rows, inner, outputs in self.products)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in CONVOLUTIONS:  # (batch, filters, *positions)
            self.products.append((math.prod(out.shape[2:]), args[1][0].numel(), out.shape[1]))
        elif func is F.linear or func in PRODUCTS:  # (batch, ..., outputs)
            inner = args[1].shape[-1] if func is F.linear else args[0].shape[-1]
            self.products.append((math.prod(out.shape[1:-1]), inner, out.shape[-1]))
        return out


def profile(frontend: FrontEnd) -> dict[str, Any]:
    """input, input_shape, feature_dim, n_params, gflops_per_clip (multiply-adds x 2 of one
    clip's forward pass from the network's input) and the layers whose means form the vector."""
    if isinstance(frontend, Imported):  # a model of its own: it says what it can
        return frontend.profile()
    held = next(itertools.chain(frontend.parameters(), frontend.buffers()), None)
    x = torch.zeros((frontend.profile_clips, *frontend.input_shape), device=None if held is None else held.device)
    with torch.no_grad(), FlopCount() as counter:
        layers = frontend.trace(x)
    return {
        "input": frontend.input_kind,
        "input_shape": list(frontend.input_shape),
        "feature_dim": sum(layer.n_features for layer in layers),
        "n_params": sum(p.numel() for p in frontend.parameters()),
        "gflops_per_clip": counter.total / 1e9,
        "layers": [{"name": l.name, "shape": list(l.shape), "n_features": l.n_features} for l in layers],
    }
