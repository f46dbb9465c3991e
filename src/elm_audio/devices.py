"""Where computations run: ``device=auto|cpu|cuda`` (or any torch device string)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .config import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA is an error, not a silent CPU run."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: CUDA is not available on this machine; use device=cpu or device=auto")
    return dev


@contextmanager
def convolutions_tuned(device: torch.device) -> Iterator[None]:
    """On CUDA, cuDNN's autotuner on while inside (``torch.backends.cudnn.benchmark``): the first
    call of each convolution shape times cuDNN's algorithms for it and keeps the fastest. An
    extraction or a training runs the same few shapes (one batch size, one input length) for
    every batch, where the default, a heuristic's pick without timing, may pick a slower kernel
    for shapes unlike the common ones (one-frame-high filters over 88 channels, 3,592 filters).
    The pick may differ between runs, so features computed on CUDA may differ in their last bits
    from one run to the next (the order of float sums). Elsewhere, nothing changes."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
