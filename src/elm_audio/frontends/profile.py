"""What a front-end is and costs, measured on torch's meta device (no memory, no time)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .base import FrontEnd
from .imported import Imported


def profile(frontend: FrontEnd) -> dict[str, Any]:
    """input, input_shape, feature_dim, n_params, gflops_per_clip (multiply-adds x 2 of one
    clip's forward pass from the network's input) and the layers whose means form the vector."""
    if isinstance(frontend, Imported):  # a model of its own: it says what it can
        return frontend.profile()
    meta = copy.deepcopy(frontend).to("meta")
    x = torch.zeros((1, *meta.input_shape), device="meta")
    with FlopCounterMode(display=False) as counter:
        layers = meta.trace(x)
    return {
        "input": meta.input_kind,
        "input_shape": list(meta.input_shape),
        "feature_dim": sum(layer.n_features for layer in layers),
        "n_params": sum(p.numel() for p in frontend.parameters()),
        "gflops_per_clip": counter.get_total_flops() / 1e9,
        "layers": [{"name": l.name, "shape": list(l.shape), "n_features": l.n_features} for l in layers],
    }
