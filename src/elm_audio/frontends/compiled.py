"""Kernels for the CPU that keep only the maxima of the products they compute
(kernels/*.cpp), compiled for the machine at first use and called through ctypes: the
frequency max-pool of frequency_max_conv in float32 (``Kernel.frequency_max``, and with the
offsets that won for training), vgg's first block max-pooled as it is convolved
(``Kernel.pooled_max``), and the frequency max-pool in bf16 on Intel's matrix units
(``AmxKernel``, where the CPU has AMX).

The library's forms of those layers write every product and read it again to take the
maximum: timbral_temporal large's 38-band filters have 59 offsets, and a 1 x 38 filter makes 76
FLOPs of each value written, so the writing and reading bound the layer. No torch, oneDNN or
MKL op maximizes products as it computes them. On an Intel Xeon with AMX, batch 2:
timbral_temporal large float32 216-218 -> 315-317 GFLOP/s, bf16 568-583 -> 1,471-1,474;
cnn_7x86 bf16 1,614-1,643 -> 2,481-2,511; vgg's first block 190 -> 62 ms (docs/performance.md).

Built with the C++ compiler Python was built with (``CXX`` overrides it), ``-march=native``,
into a per-user cache keyed by the source, the flags, the compiler and the CPU (a home folder
shared by machines of different CPUs gets one build each); written under a temporary name and
renamed, so processes building at once never load a half-written file. Where no compiler
works, a warning says so once and the layers keep the library's forms.
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
from pathlib import Path

import torch
from torch.utils.weak import WeakIdKeyDictionary

from ..devices import THREAD_FUNCTION, openmp_runtime

SOURCE = Path(__file__).with_name("kernels") / "frequency_max.cpp"
AMX_SOURCE = SOURCE.with_name("frequency_max_amx.cpp")
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


def build(flags: tuple[str, ...] = FLAGS, folder: Path | None = None, source: Path = SOURCE) -> Path:
    """The shared library of ``source`` for this machine, compiled unless the cache holds it.
    Raises OSError (no compiler) or subprocess.CalledProcessError (it failed, its output in
    ``stderr``)."""
    command = compiler()
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\0".join([source.read_text(), *flags, version, cpu_identity()]).encode()).hexdigest()[:16]
    folder = folder or cache_folder()
    target = folder / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=folder, prefix=f".{source.stem}-", suffix=".so")
    except OSError:  # a cache this user cannot write: a build of this process's own
        target = Path(tempfile.mkdtemp(prefix="elm_audio-kernel-")) / target.name
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{source.stem}-", suffix=".so")
    os.close(fd)
    try:
        subprocess.run([*command, *flags, str(source), "-o", partial], capture_output=True, text=True, check=True)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


class F32Call(ctypes.Structure):
    """kernels/frequency_max.cpp's f32_call."""

    _fields_ = [(name, ctypes.c_void_p) for name in ("x", "w", "bias", "out", "won")] + [("positions", ctypes.c_int64)] + [
        (name, ctypes.c_int) for name in ("padded", "mels", "frames", "bands", "filters", "relu", "nans", "shares", "next")
    ]


class PooledCall(ctypes.Structure):
    """kernels/frequency_max.cpp's pooled_call."""

    _fields_ = [(name, ctypes.c_void_p) for name in ("x", "w", "bias", "out")] + [("positions", ctypes.c_int64)] + [
        (name, ctypes.c_int)
        for name in ("rows", "cols", "kh", "kw", "ph", "pw", "filters", "nans", "out_bf16", "shares", "next")
    ]


class AmxCall(ctypes.Structure):
    """kernels/frequency_max_amx.cpp's amx_call."""

    _fields_ = [(name, ctypes.c_void_p) for name in ("x", "w", "bias", "out", "won")] + [("positions", ctypes.c_int64)] + [
        (name, ctypes.c_int) for name in ("padded", "mels", "frames", "bands", "filters", "relu", "shares", "next")
    ]


class Threaded:
    """Runs a kernel's call on torch's threads: one parallel region of torch's OpenMP pool, each
    thread taking shares of the output positions until none is left (ctypes lets go of the GIL
    for it). Threads of a pool of their own, as a first version had, ran the kernel while
    torch's OpenMP threads still spun after the op before, two threads a core, and torch's next
    op waited for its threads to wake (timbral_temporal large, bf16: the means of the kernel's
    maps took 1.9 ms each, 0.25 alone). Where torch has no OpenMP runtime to reach, such a pool."""

    def __init__(self) -> None:
        self._packed = WeakIdKeyDictionary()  # packed weights, by the weight's identity
        self.forget_pool()

    def run(self, shares, call: ctypes.Structure) -> None:
        """shares(&call) on torch's threads, call.positions split into one share a thread."""
        threads = max(1, min(torch.get_num_threads(), call.positions))
        call.shares, call.next = threads, 0
        runtime = openmp_runtime()
        if threads == 1:
            shares(ctypes.byref(call))
        elif runtime is not None:
            runtime.GOMP_parallel(shares, ctypes.byref(call), threads, 0)
        else:
            list(self.pool(threads).map(lambda _: shares(ctypes.byref(call)), range(threads)))

    def held(self, weight: torch.Tensor, bias: torch.Tensor | None, pack) -> tuple[torch.Tensor, torch.Tensor]:
        """pack(weight, bias), kept while the weight lives and neither has changed in place
        (inference tensors, which count no changes, are packed at every call)."""
        if weight.is_inference() or (bias is not None and bias.is_inference()):
            return pack(weight, bias)
        stamp = (weight._version, None if bias is None else (bias.data_ptr(), bias._version))
        held = self._packed.get(weight)
        if held is None or held[0] != stamp:
            held = self._packed[weight] = (stamp, pack(weight.detach(), None if bias is None else bias.detach()))
        return held[1]

    @staticmethod
    def outputs(batch: int, length: int, filters: int, dtype: torch.dtype, offsets: int,
                winners: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A frequency max-pool's output (batch, filters, length) in ``dtype``, (batch, length,
        filters) in memory, not a view (autograd would keep a Function's output from being
        changed in place, the ReLU); and where ``winners``, the offsets that won, as bytes."""
        if winners and offsets > 256:
            raise ValueError(f"the kernels' winners are bytes: {offsets} offsets are too many")
        out = torch.empty_strided((batch, filters, length), (length * filters, 1, filters), dtype=dtype)
        return out, torch.empty(batch, length, filters, dtype=torch.uint8) if winners else None

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


def padded_bias(bias: torch.Tensor | None, filters: int, multiple: int) -> torch.Tensor:
    """bias in float32 (zeros where None), zeros added up to a multiple of ``multiple``."""
    extra = -filters % multiple
    return torch.zeros(filters + extra) if bias is None else torch.nn.functional.pad(bias.float(), (0, extra))


class Kernel(Threaded):
    """The float32 kernel: ``frequency_max`` computes a layer, ``maxima_and_winners`` a training
    forward."""

    def __init__(self, library: ctypes.CDLL) -> None:
        super().__init__()
        self.shares = THREAD_FUNCTION(("frequency_max_f32_shares", library))
        self.pooled_shares = THREAD_FUNCTION(("pooled_max_f32_shares", library))
        self.block_filters: int = library.frequency_max_block_filters()
        self.pool_rows: int = library.pooled_max_rows()

    def pack(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """weight (filters, [1,] frames, bands) in blocks of block_filters filters, (blocks,
        frames * bands, block_filters), zero filters added, and the bias as long."""
        filters = weight.shape[0]
        rows = torch.nn.functional.pad(weight.reshape(filters, -1).float(), (0, 0, 0, -filters % self.block_filters))
        blocks = rows.view(-1, self.block_filters, rows.shape[1]).transpose(1, 2).contiguous()
        return blocks, padded_bias(bias, filters, self.block_filters)

    def frequency_max(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
                      nans: bool) -> torch.Tensor:
        """max over frequency offsets of x (batch, frames', mels) float32, time already padded,
        convolved with weight (filters, [1,] frames, bands), plus bias, its ReLU where ``relu``:
        (batch, filters, frames' - frames + 1), channels-last. ``nans``: whether a NaN product
        must win (the caller could not prove every product finite)."""
        return self._compute(x, weight, bias, relu, nans, winners=False)[0]

    def maxima_and_winners(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                           nans: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """frequency_max without ReLU, and the offset each maximum came from (uint8, the first of
        equal ones, as max_pool2d's; (batch, frames, filters)): what a training step's backward
        needs of the forward."""
        return self._compute(x, weight, bias, False, nans, winners=True)

    def _compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool, nans: bool,
                 winners: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        filters, (frames, bands) = weight.shape[0], weight.shape[-2:]
        blocks, shift = self.held(weight, bias, self.pack)
        x = x.detach().contiguous()
        batch, padded, mels = x.shape
        length = padded - frames + 1
        out, won = self.outputs(batch, length, filters, torch.float32, mels - bands + 1, winners)
        self.run(self.shares, F32Call(
            x.data_ptr(), blocks.data_ptr(), shift.data_ptr(), out.data_ptr(), None if won is None else won.data_ptr(),
            batch * length, padded, mels, frames, bands, filters, int(relu), int(nans)))
        return out, won

    def pooled_max(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pool: tuple[int, int],
                   nans: bool, dtype: torch.dtype) -> torch.Tensor:
        """A one-channel convolution of x (batch, rows, cols), its padding already added, with
        weight (filters, 1, kh, kw), max-pooled over non-overlapping ``pool`` windows as it is
        computed (the map is never written), plus bias: rows (batch x pooled rows x pooled
        columns, filters) in ``dtype`` (float32 or bf16, rounded once from float32 sums).
        ``pool``'s width divides pool_rows. ``nans`` as in frequency_max."""
        filters, (kh, kw) = weight.shape[0], weight.shape[-2:]
        blocks, shift = self.held(weight, bias, self.pack)
        x = x.detach().float().contiguous()
        batch, rows, cols = x.shape
        (ph, pw), group = pool, self.pool_rows // pool[1]
        out_rows, out_cols = (rows - kh + 1) // ph, (cols - kw + 1) // pw
        if self.pool_rows % pw or out_cols < group:
            raise ValueError(f"pooled_max takes pools {pw} wide into at least {group} columns, not {pool} into {out_cols}")
        out = torch.empty(batch * out_rows * out_cols, filters, dtype=dtype)
        self.run(self.pooled_shares, PooledCall(
            x.data_ptr(), blocks.data_ptr(), shift.data_ptr(), out.data_ptr(), batch * out_rows * -(-out_cols // group),
            rows, cols, kh, kw, ph, pw, filters, int(nans), int(dtype == torch.bfloat16)))
        return out


class AmxKernel(Threaded):
    """The bf16 kernel on Intel's matrix units (kernels/frequency_max_amx.cpp): tile products
    of up to 16 offsets' windows by 16 filters, summed in float32, maximized, written in bf16."""

    block_filters = 32  # two tiles' columns

    def __init__(self, library: ctypes.CDLL) -> None:
        super().__init__()
        self.shares = THREAD_FUNCTION(("frequency_max_amx_shares", library))

    def pack(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """weight (filters, [1,] frames, bands) as the tiles' right operands: (filters / 16,
        frames, chunks, kc / 2 pairs of bands, 16 filters, 2) in bf16, a window's bands in the
        fewest chunks of at most 32, kc (even) each, as the kernel reads them; zero bands and
        filters added; the bias in float32."""
        filters, (frames, bands) = weight.shape[0], weight.shape[-2:]
        chunks = -(-bands // 32)
        kc = (-(-bands // chunks) + 1) & ~1
        extra = -filters % self.block_filters
        w = torch.nn.functional.pad(weight.reshape(filters, frames, bands).float(), (0, chunks * kc - bands, 0, 0, 0, extra))
        tiles = w.view(-1, 16, frames, chunks, kc // 2, 2).permute(0, 2, 3, 4, 1, 5).contiguous()
        return tiles.to(torch.bfloat16), padded_bias(bias, filters, self.block_filters)

    def frequency_max(self, spec: torch.Tensor, pad_time: int, weight: torch.Tensor, bias: torch.Tensor | None,
                      relu: bool) -> torch.Tensor:
        """max over frequency offsets of spec (batch, frames', mels) bf16, every value finite,
        zero-padded by ``pad_time`` frames at each end, convolved with weight (filters, [1,]
        frames, bands), plus bias, its ReLU where ``relu``: bf16 (batch, filters, frames),
        channels-last."""
        return self._compute(spec, pad_time, weight, bias, relu, winners=False)[0]

    def maxima_and_winners(self, x: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """frequency_max of x, time already padded, without ReLU, and the offset each maximum
        came from (uint8, the first of equal ones; (batch, frames, filters)): a bf16 training
        step's forward (WindowMax)."""
        return self._compute(x, 0, weight, bias, False, winners=True)

    def _compute(self, spec: torch.Tensor, pad_time: int, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
                 winners: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        filters, (frames, bands) = weight.shape[0], weight.shape[-2:]
        tiles, shift = self.held(weight, bias, self.pack)
        spec = spec.detach()
        batch, length, mels = spec.shape
        padded = length + 2 * pad_time
        # the padded spectrogram and 64 zeros after it: a window's last tile reads past its bands
        flat = spec.new_zeros(batch * padded * mels + 64)
        x = flat[: batch * padded * mels].view(batch, padded, mels)
        x[:, pad_time : pad_time + length] = spec
        length = padded - frames + 1
        out, won = self.outputs(batch, length, filters, torch.bfloat16, mels - bands + 1, winners)
        self.run(self.shares, AmxCall(
            flat.data_ptr(), tiles.data_ptr(), shift.data_ptr(), out.data_ptr(), None if won is None else won.data_ptr(),
            batch * length, padded, mels, frames, bands, filters, int(relu)))
        return out, won


def _forget_pools() -> None:
    for cached in (kernel, amx_kernel):
        if cached.cache_info().currsize and (loaded := cached()) is not None:
            loaded.forget_pool()


def load(path: Path) -> Kernel:
    return Kernel(ctypes.CDLL(str(path)))


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



def has_amx() -> bool:
    """Whether the CPU reports bf16 matrix units (Linux's /proc/cpuinfo flags)."""
    flags = cpu_identity().split()
    return "amx_bf16" in flags and "amx_tile" in flags


@functools.cache
def amx_kernel() -> AmxKernel | None:
    """The bf16 kernel on this CPU's matrix units, built at the first call; None where the CPU has
    none, where Linux does not grant them, or (with a warning) where it cannot be built."""
    if not has_amx():
        return None
    try:
        library = ctypes.CDLL(str(build(source=AMX_SOURCE)))
    except (OSError, subprocess.CalledProcessError) as error:
        warnings.warn(f"elm_audio: the bf16 frequency-max kernel for AMX could not be built ({error}); "
                      "those layers take the library's slower forms in bf16", RuntimeWarning, stacklevel=2)
        return None
    if library.frequency_max_amx_enable() != 0:
        return None  # a kernel without the matrix units' state (Linux before 5.16)
    return AmxKernel(library)


os.register_at_fork(after_in_child=_forget_pools)
