"""Where computations run: ``device=auto|cpu|cuda`` (or any torch device string)."""

from __future__ import annotations

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
