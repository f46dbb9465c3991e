"""``extract.batch_size=auto`` and ``extract.num_workers=auto``: the batch size and decoding
threads chosen for the device, once, by settings.load (an int given in the config is kept).

On the CPU: batches of 8 clips (a larger batch would only hold more memory: the CPU table's
rates, at batch 2, already reach 0.66 to 0.83 of the float32 limit) and one decoding thread per
core. The decoding threads run at a lower priority than the network's (extract.py), so they take
the cycles it leaves. On this project's 2-core machines, two threads against one (extraction of
32 WAV and MP3 clips, batch 8): small front-ends, which decoding dominates (51 clips/s on one
core, against their networks' 47 to 123), 1.15 to 1.3 times as many clips/s (mfcc 29 -> 37, vgg
33 -> 41, sample_level 32 -> 40, cnn_7x86 25 -> 30, timbral_temporal 25 -> 28); large front-ends,
which need a few percent of a core for decoding, the same within the noise (vgg 1.0 -> 1.1,
cnn_7x86 2.6 -> 2.6, timbral_temporal 6.2 -> 6.3).

On CUDA the network runs on the GPU and the CPU's cores are free to decode: on an H200 with 16
cores, extraction was bound by decoding (352 to 366 clips/s with 16 threads, against the
networks' 474 to 1,039 clips/s in bf16), and it ran with 16 decoding threads and batches of 16
(docs/performance.md). So:

- threads, on every device: as many as the cores this process may use, at most MOST_WORKERS (16,
  the count measured on CUDA; with 16-clip batches a chunk of 256 clips holds 16 batches, one per
  thread);
- batch, on CUDA: the largest power of two, at most CUDA_MOST_BATCH, whose estimated peak memory fits in
  MEMORY_SHARE of the GPU's *total* memory. Total, not free: every process on the same GPU model
  then picks the same batch, whatever else runs there, and the chunks of a shared extraction
  are computed per batch size (chunks.py), so only processes of one batch size share them.

The estimate is the front-end's own: one clip's forward pass (the log-mel included) traced on
the meta device in the layer forms CUDA takes, counting the bytes of the maps held at once, in the
run's precision (tensors computed in float32 counted at the precision's width), plus the
weights; then SAFETY times that must fit. Nothing is run and no memory is taken.
"""

from __future__ import annotations

import copy
import os
import sys
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..frontends import FrontEnd
from ..frontends.base import forms
from .chunks import CHUNK_CLIPS
from .precision import PRECISIONS

AUTO = "auto"  # the config's value for "chosen for the device"

CPU_BATCH = 8
# Decoding threads, at most: the count the H200's extraction was measured with (16 cores).
MOST_WORKERS = 16
# The network's figures on the H200 were taken at batch 64; past it no front-end computes faster.
LARGEST_BATCH = 64
# A chunk (at most CHUNK_CLIPS clips) is one extraction of its own, whose batches, and then the
# next chunk's, are decoded one per thread (extract.Decoder): batches larger than CHUNK_CLIPS /
# MOST_WORKERS (16) leave threads without a batch (at 64, the two chunks' 8 batches keep 8 of 16
# threads busy: half the decoding rate).
CUDA_MOST_BATCH = min(LARGEST_BATCH, CHUNK_CLIPS // MOST_WORKERS)
# The share of the GPU's total memory a batch's estimated peak may take: room for up to four
# processes on one GPU (a SLURM array's tasks, or a run beside an extraction), and for what else
# this process keeps there (the classifiers' kernel matrices after extraction, torch's own cache).
MEMORY_SHARE = 0.25
# What the trace does not see, over what it counts: cuDNN's workspace (some algorithms take as
# much as a map again), the caching allocator's rounding and fragmentation, autocast's copies (a
# reduced-precision copy of the log-mel and of the weights). Not measured on a GPU: chosen to err
# towards smaller batches, which cost a large front-end little (one clip's maps already fill the GPU).
SAFETY = 2.0


def cuda_batch_size(
    total_memory: float,
    clip_bytes: float,
    weight_bytes: float = 0,
    share: float = MEMORY_SHARE,
    safety: float = SAFETY,
    most: int = CUDA_MOST_BATCH,
) -> int:
    """The largest power of two, at most ``most`` (itself a power of two, at most LARGEST_BATCH)
    and at least 1, whose estimated peak, ``safety`` x (``weight_bytes`` + batch x
    ``clip_bytes``), fits in ``share`` of ``total_memory`` (bytes); 1 where even one clip
    does not fit (the run then tries)."""
    if most < 1 or most & (most - 1) or most > LARGEST_BATCH:
        raise ValueError(f"most={most}: a power of two from 1 to {LARGEST_BATCH}")
    if safety < 1:
        raise ValueError(f"safety={safety} must be at least 1")
    budget = share * total_memory
    batch = most
    while batch > 1 and safety * (weight_bytes + batch * clip_bytes) > budget:
        batch //= 2
    return batch


def decoding_workers(cores: int, most: int = MOST_WORKERS) -> int:
    """Decoding threads: one per core this process may use, at most ``most``, at least 1. They
    run at a lower priority than the thread that computes the network (extract.py)."""
    return max(1, min(most, cores))


def usable_cores() -> int:
    """The cores this process may run on (its affinity: what SLURM's cpus_per_task or taskset
    leave it), or the machine's where the system does not say."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _HeldBytes(TorchDispatchMode):
    """The most bytes of tensors created inside it that are held at once: each new storage
    counted when an operation makes it, and no longer once its last tensor is gone. Tensors
    that are float32 count at ``float32_width`` bytes an element (the run's precision)."""

    def __init__(
        self, float32_width: int = 4, weights: tuple[torch.Tensor, ...] = ()
    ) -> None:
        super().__init__()
        self.float32_width = float32_width
        self.held = 0
        self.peak = 0
        # the weights' storages, counted apart: a view of a weight made in the pass is no new map
        self._counted: set[int] = {id(t.untyped_storage()) for t in weights}

    def _release(self, key: int, n: int) -> None:
        self._counted.discard(key)
        self.held -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key in self._counted:  # a view, or an operation in place
                continue
            n = storage.nbytes()
            if t.dtype == torch.float32:
                n = n * self.float32_width // 4
            self._counted.add(key)
            self.held += n
            weakref.finalize(storage, self._release, key, n)
        self.peak = max(self.peak, self.held)
        return out


def clip_bytes(frontend: FrontEnd, precision: str = "fp32") -> tuple[int, int]:
    """(bytes one clip's forward pass holds at its peak, the weights' bytes) of ``frontend``
    (built on the meta device, or anywhere: a copy is traced on the meta device) from its
    waveform, in the layer forms CUDA takes, in ``precision``."""
    dtype = PRECISIONS[precision]
    width = 4 if dtype is None else torch.empty((), dtype=dtype).element_size()
    # a copy, moved: buffers made from numpy arrays are the CPU's even where it was built on meta
    net = copy.deepcopy(frontend).to("meta")
    held = (*net.parameters(), *net.buffers())
    weights = sum(t.numel() * t.element_size() for t in held)
    counter = _HeldBytes(width, held)
    # (the STFT's meta kernel imports torch's compiler: 2 s, once per process, on CUDA only)
    with torch.no_grad(), forms(True), counter:
        waveform = torch.zeros((1, net.input_samples), device="meta")
        net(waveform)
    return counter.peak, weights


def batch_size(
    device: torch.device,
    precision: str,
    frontend: FrontEnd | None,
    total_memory: float | None = None,
) -> int:
    """``extract.batch_size=auto`` on ``device``: CPU_BATCH on the CPU; on CUDA, cuda_batch_size
    for the front-end's estimate (clip_bytes) and the GPU's total memory (``total_memory`` where
    given: a test's). A front-end whose memory cannot be known before its model is loaded (an
    imported one: ``frontend`` None) takes CPU_BATCH there too."""
    if device.type != "cuda" or frontend is None:
        return CPU_BATCH
    if total_memory is None:
        total_memory = torch.cuda.get_device_properties(device).total_memory
    per_clip, weights = clip_bytes(frontend, precision)
    return cuda_batch_size(total_memory, per_clip, weights)


def num_workers(cores: int | None = None) -> int:
    """``extract.num_workers=auto``, on any device: decoding_workers of the cores this process
    may use (``cores`` where given: a test's)."""
    return decoding_workers(usable_cores() if cores is None else cores)


_said: set[str] = set()


def resolve(
    given_batch: int | str,
    given_workers: int | str,
    device: torch.device,
    precision: str,
    frontend: Callable[[], FrontEnd | None],
) -> tuple[int, int]:
    """(batch size, decoding threads) as extraction uses them: each value given, or where it is
    AUTO, chosen for ``device`` (``frontend`` builds the front-end on the meta device, or gives
    None for an imported one; called only where the batch is chosen on CUDA). On CUDA, what
    was chosen is said in one line on stderr (once per process and choice); the run's params
    record both values either way."""
    batch = given_batch
    if batch == AUTO:
        batch = batch_size(
            device, precision, frontend() if device.type == "cuda" else None
        )
    workers = num_workers() if given_workers == AUTO else given_workers
    if device.type == "cuda" and AUTO in (given_batch, given_workers):
        gpu = torch.cuda.get_device_properties(device)
        line = (
            f"elm_audio: extraction on {gpu.name} ({gpu.total_memory / 1e9:.0f} GB): batches of {batch} "
            f"clip(s), {workers} decoding thread(s) (extract.batch_size={given_batch}, "
            f"extract.num_workers={given_workers})"
        )
        if line not in _said:
            _said.add(line)
            print(line, file=sys.stderr, flush=True)
    return int(batch), int(workers)
