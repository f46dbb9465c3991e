"""Whether autograd records what a layer computes, and where: the layers with a faster inference
form then take the form whose backward is cheap, and on the CPU outside autocast the front-ends'
own backward Functions (a module of its own, below both ``base`` and ``fused``)."""

from __future__ import annotations

import torch


def under_autograd(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on these tensors (weights=trained)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def cpu_without_autocast(x: torch.Tensor) -> bool:
    """Whether ``x`` is computed on the CPU with autocast off: where the front-ends' own backward
    Functions (sample_level's WindowProduct, vgg's PooledProducts and SameConv3x3) replace
    oneDNN's backward kernels."""
    return x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
