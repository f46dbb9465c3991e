"""Whether autograd records what a layer computes: the layers with a faster inference form then
take the form whose backward is cheap (a module of its own, below both ``base`` and ``fused``)."""

from __future__ import annotations

import torch


def under_autograd(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on these tensors (weights=trained)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
