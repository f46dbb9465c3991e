"""Where computations run: ``device=auto|cpu|cuda`` (or any torch device string), and how the
host process keeps its memory."""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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
    of vgg large's float32 training took 51-84 s instead of 4.7-5.9 (a batch of two). The bits
    belong to each thread, and torch sets them on the calling one alone: they are set on every
    thread of torch's pool (``on_every_intra_op_thread``), without which the pool's other
    threads kept computing half of every product with denormals (3 of 10 vgg steps at 8.8-25.7
    s; none of 10 with every thread flushing: 4.8-5.1 s). Training's updates are about 1e-4 of
    the weights, so zeroing what is 1e-38 changes nothing it learns. Elsewhere, nothing changes."""
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        on_every_intra_op_thread(lambda: torch.set_flush_denormal(True))
        yield
    finally:
        on_every_intra_op_thread(lambda: torch.set_flush_denormal(False))


# libgomp's entry for a parallel region: GOMP_parallel(fn, data, num_threads, flags)
THREAD_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.cache
def openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's intra-op threads belong to, as this process loaded it, or None
    where torch uses none or it is not found. Other packages load runtimes of their own, each
    with its own threads (scikit-learn's wheels a libgomp of theirs): torch's wheels keep theirs
    in torch/lib (or a torch.libs folder beside it); a build linked to the system's runtime
    takes it where it is the only one loaded."""
    if not torch.backends.openmp.is_available():
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {Path(line.split()[-1]) for line in maps if "/libgomp" in line or "/libiomp" in line}
    except OSError:  # not Linux
        return None
    home = Path(torch.__file__).resolve().parent
    torchs = [p for p in paths if p.resolve().parent in (home / "lib", home.with_name("torch.libs"))]
    if len(torchs) != 1 and len(paths) != 1:
        return None
    runtime = ctypes.CDLL(str(torchs[0] if torchs else paths.pop()))
    if not hasattr(runtime, "GOMP_parallel"):
        return None
    runtime.GOMP_parallel.argtypes = (THREAD_FUNCTION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)
    runtime.GOMP_parallel.restype = None
    return runtime


def on_every_intra_op_thread(call: Callable[[], object]) -> None:
    """Run ``call()`` on this thread and on every other thread of torch's intra-op pool, which
    keep per-thread state (the floating-point control bits) that torch's own setters change
    on the calling thread alone: one OpenMP parallel region as wide as torch's, whose threads
    are the pool's (an OpenMP runtime keeps its threads from region to region). Where torch
    runs no OpenMP runtime this process can reach, on this thread alone."""
    runtime = openmp_runtime()
    if runtime is None:
        call()
        return
    region = THREAD_FUNCTION(lambda _data: call())  # ctypes takes the GIL on each thread
    runtime.GOMP_parallel(region, None, torch.get_num_threads(), 0)


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
