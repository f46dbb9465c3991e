"""frequency_max_conv's fused float32 kernel for the CPU (kernels/frequency_max.cpp), compiled
for the machine at first use and called through ctypes.

The library's forms of that layer write every offset's products and read them again to take
their maximum: timbral_temporal large's 38-band filters have 59 offsets, and a 1 x 38 filter
makes 76 FLOPs of each value written, so the writing and reading bound the layer (its shapes'
bare products ran 1.4 times the network's rate). No library op maximizes products as it
computes them; this kernel does, keeping each block of offsets x filters in registers. On an
Intel Xeon with AMX (float32 limit 297 GFLOP/s), timbral_temporal large, batch 2: 1 x 38 filters
125 -> 253 GFLOP/s, 3 x 38 205 -> 285, 7 x 38 237 -> 291; the network 182 -> 234.

Built with the C++ compiler Python was built with (``CXX`` overrides it), ``-march=native``,
into a per-user cache keyed by the source, the flags, the compiler and the CPU (a home folder
shared by machines of different CPUs gets one build each); written under a temporary name and
renamed, so processes building at once never load a half-written file. Where no compiler
works, a warning says so once and the layer keeps the library's forms.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.weak import WeakIdKeyDictionary

SOURCE = Path(__file__).with_name("kernels") / "frequency_max.cpp"
# no predictive commoning: GCC would carry each offset's input value over to the next band in a
# register, more than the CPU has, and spill the accumulators (tt's layers: 0.6x)
FLAGS = ("-O3", "-march=native", "-fno-predictive-commoning", "-std=c++17", "-shared", "-fPIC")


def compiler() -> list[str]:
    """The C++ compiler command: ``CXX``, else the one Python was built with, else c++."""
    command = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    return command.split()


def cpu_identity() -> str:
    """What -march=native compiles for: the CPU's model and flags (Linux), or the platform."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(wanted))


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "elm_audio" / "kernels"


def build(flags: tuple[str, ...] = FLAGS, folder: Path | None = None) -> Path:
    """The shared library of SOURCE for this machine, compiled unless the cache holds it.
    Raises OSError (no compiler) or subprocess.CalledProcessError (it failed, its output in
    ``stderr``)."""
    command = compiler()
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *flags, version, cpu_identity()]).encode()).hexdigest()[:16]
    folder = folder or cache_folder()
    target = folder / f"frequency_max-{key}.so"
    if target.exists():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=folder, prefix=".frequency_max-", suffix=".so")
    except OSError:  # a cache this user cannot write: a build of this process's own
        target = Path(tempfile.mkdtemp(prefix="elm_audio-kernel-")) / target.name
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".frequency_max-", suffix=".so")
    os.close(fd)
    try:
        subprocess.run([*command, *flags, str(SOURCE), "-o", partial], capture_output=True, text=True, check=True)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


_ARGS = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
         ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]


@dataclass
class Kernel:
    """The loaded kernel: ``frequency_max`` computes a layer, split between torch's threads."""

    library: ctypes.CDLL
    block_filters: int

    def __post_init__(self) -> None:
        self.function = self.library.frequency_max_f32
        self.function.argtypes = _ARGS
        self.function.restype = None
        self._packed = WeakIdKeyDictionary()  # by the weight's identity
        self._lock = threading.Lock()
        self._pool: tuple[int, ThreadPoolExecutor] | None = None

    def packed(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """weight (filters, [1,] frames, bands) in blocks of block_filters filters, (blocks,
        frames * bands, block_filters), zero filters added, and the bias (a multiple of
        block_filters); kept while the weight lives and neither has changed in place."""
        stamp = (weight._version, None if bias is None else (bias.data_ptr(), bias._version))
        held = self._packed.get(weight)
        if held is not None and held[0] == stamp:
            return held[1]
        filters = weight.shape[0]
        extra = -filters % self.block_filters
        rows = torch.nn.functional.pad(weight.detach().reshape(filters, -1).float(), (0, 0, 0, extra))
        blocks = rows.view(-1, self.block_filters, rows.shape[1]).transpose(1, 2).contiguous()
        shift = torch.zeros(filters + extra) if bias is None else torch.nn.functional.pad(bias.detach().float(), (0, extra))
        self._packed[weight] = (stamp, (blocks, shift))
        return blocks, shift

    def frequency_max(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
                      nans: bool) -> torch.Tensor:
        """max over frequency offsets of x (batch, frames', mels) float32, time already padded,
        convolved with weight (filters, [1,] frames, bands), plus bias, its ReLU where ``relu``:
        (batch, filters, frames' - frames + 1), channels-last. ``nans``: whether a NaN product must win (the
        caller could not prove every product finite)."""
        return self._compute(x, weight, bias, relu, nans, winners=False)[0]

    def maxima_and_winners(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                           nans: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """frequency_max without ReLU, and the offset each maximum came from (uint8, the first of
        equal ones, as max_pool2d's; (batch, frames, filters)): what a training step's backward
        needs of the forward."""
        out, won = self._compute(x, weight, bias, False, nans, winners=True)
        return out, won

    def _compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool, nans: bool,
                 winners: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        filters, (frames, bands) = weight.shape[0], weight.shape[-2:]
        blocks, shift = self.packed(weight, bias)
        x = x.detach().contiguous()
        batch, padded, mels = x.shape
        if winners and mels - bands >= 256:
            raise ValueError(f"the kernel's winners are bytes: {mels - bands + 1} offsets are too many")
        length = padded - frames + 1
        # (batch, filters, length) as (batch, length, filters) in memory: not a view, which
        # autograd would keep a Function's output from being changed in place (the ReLU)
        out = torch.empty_strided((batch, filters, length), (length * filters, 1, filters))
        won = torch.empty(batch, length, filters, dtype=torch.uint8) if winners else None
        positions = batch * length
        threads = max(1, min(torch.get_num_threads(), positions))
        cuts = [positions * i // threads for i in range(threads + 1)]

        def part(i: int) -> None:
            self.function(x.data_ptr(), padded, mels, blocks.data_ptr(), shift.data_ptr(), frames, bands, filters,
                          int(relu), int(nans), out.data_ptr(), None if won is None else won.data_ptr(),
                          cuts[i], cuts[i + 1])

        if threads == 1:
            part(0)
        else:  # ctypes lets go of the GIL while each part runs
            list(self.pool(threads).map(part, range(threads)))
        return out, won

    def forget_pool(self) -> None:
        """After a fork: the child has none of its parent's threads, and starts a pool of its own."""
        self._lock, self._pool = threading.Lock(), None

    def pool(self, threads: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool[0] != threads:
                if self._pool is not None:
                    self._pool[1].shutdown(wait=False)
                self._pool = threads, ThreadPoolExecutor(threads, thread_name_prefix="frequency_max")
            return self._pool[1]


def _forget_pools() -> None:
    if kernel.cache_info().currsize and (loaded := kernel()) is not None:
        loaded.forget_pool()


def load(path: Path) -> Kernel:
    library = ctypes.CDLL(str(path))
    return Kernel(library, library.frequency_max_block_filters())


@functools.cache
def kernel() -> Kernel | None:
    """This machine's kernel, built at the first call; None, with a warning, where it cannot be."""
    try:
        return load(build())
    except subprocess.CalledProcessError as error:
        why = f"{shlex.join(error.cmd)} failed:\n{error.stderr.strip()[-2000:]}"
    except OSError as error:
        why = f"no C++ compiler ran ({error}); install one (Debian: apt install g++) or set CXX"
    warnings.warn(
        f"elm_audio: the fused frequency-max kernel could not be built, so filters over part of the "
        f"spectrogram's bands take the library's slower forms in float32 (timbral_temporal: 0.8x): {why}",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


os.register_at_fork(after_in_child=_forget_pools)
