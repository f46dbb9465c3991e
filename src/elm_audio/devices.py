"""Where computations run: ``device=auto|cpu|cuda`` (or any torch device string), and how the
host process keeps its memory."""

from __future__ import annotations

import ctypes
import os
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


@contextmanager
def denormals_flushed(device: torch.device) -> Iterator[None]:
    """On the CPU, float values below the smallest normal one (1.2e-38 in float32) read and
    written as zero while inside (``torch.set_flush_denormal``: the x86 FTZ and DAZ bits), then
    torch's default again (torch cannot say what it was). An Intel core computes with such
    values through microcode, a hundred times slower: on an Intel Xeon one step in five to eight
    of vgg large's float32 training took 51-84 s instead of 4.7-5.9 (a batch of two), and none
    with this on (4.6-4.7 s each). Training's updates are about 1e-4 of the weights, so zeroing
    what is 1e-38 changes nothing it learns. Elsewhere, nothing changes."""
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# glibc's own environment for what keep_freed_memory sets: where one is set, the user chose
MALLOC_ENVIRONMENT = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def _libc():
    """This process's C library, or None where it has no glibc malloc to tune (macOS, musl)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep this process's freed memory for its next allocations: every block
    from the heap (``M_MMAP_MAX`` 0: none mapped on its own) and up to 2 GB of free heap top kept
    (``M_TRIM_THRESHOLD``). By default a block over 32 MB is mapped at its allocation and
    unmapped when freed, so that the kernel maps and zeroes its pages again at first touch; the
    large front-ends allocate such maps at every batch (sample_level's 239 MB a clip), the ELM its
    hidden outputs at every fit. On a 2-core Zen 4, extraction at batch 2, alternating processes:
    sample_level large 1.12x in float32 and 1.22-1.29x in bf16, vgg 1.03-1.08x, timbral_temporal
    1.03-1.17x; the ELM's fit and predict on 3,600 x 3,585 features in a fresh process 0.70-0.75
    -> 0.63-0.66 s (docs/performance.md). The cost: between batches the process holds its peak
    instead of falling back (sample_level bf16: 1.4 GB, against 0.5), and its peak is 2-18%
    higher; it does not grow over an extraction.

    The commands call it at their start (a run, extract-only); importing the package does not.
    Where the environment sets one of glibc's MALLOC_* variables for these settings, or
    GLIBC_TUNABLES names malloc, the user chose and nothing changes (``MALLOC_MMAP_MAX_=65536``
    keeps glibc's defaults). True where the settings were taken."""
    if any(name in os.environ for name in MALLOC_ENVIRONMENT) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def give_back_memory() -> None:
    """Return the heap's free memory to the system (glibc's malloc_trim), as a run ends: a sweep's
    trials run one after another in one process, which keep_freed_memory leaves at its peak."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
