"""``precision=fp32|bf16|fp16``: what arithmetic the front-end runs in, and whether this CPU has
the units that make bf16 pay.

On CUDA, bf16 and fp16 autocast the front-end. On the CPU, bf16 runs a copy of the front-end
whose weights are bf16 ahead of time (channels-last for the 2-D convolutions, the layout
oneDNN's bf16 kernels take without reordering) on bf16 inputs, with feature-map means taken in
float32. Where bf16 would run no faster than float32, ``precision=bf16`` computes in float32
and says so once: on a CPU without bf16 units (AVX-512 BF16 or AMX), which emulates bf16, and on
an Intel CPU with AVX-512 BF16 but no AMX (Cooper Lake, or a virtual machine that hides AMX),
whose bf16 dot products computed a 2048-square product at 0.58x float32's rate and every large
front-end at 0.64-0.85x (an Emerald Rapids guest without AMX). AMX (an Intel Xeon guest
with ``amx_bf16``: 3.4-4.8x float32 on vgg, cnn_7x86 and sample_level large, 1.8-2.3x on
timbral_temporal) and AMD's AVX-512 BF16 (Zen 4 and 5: 1.65-2.18x) make bf16 pay.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import sys
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# /proc/cpuinfo flags of the units that compute bf16 products natively
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def _first_cpu(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields in Linux's ``cpuinfo`` (empty where it is not there)."""
    try:
        lines = Path(cpuinfo).read_text().split("\n\n", 1)[0].splitlines()
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them."""
    return frozenset(_first_cpu().get("flags", "").split())


def cpu_vendor() -> str:
    """/proc/cpuinfo's vendor_id: GenuineIntel, AuthenticAMD, ..."""
    return _first_cpu().get("vendor_id", "")


def cpu_matrix_features() -> dict[str, object]:
    """What this CPU offers bf16: its flags among BF16_FLAGS, its vendor and torch's vectorized
    capability."""
    flags = cpu_flags()
    return {
        **{flag: flag in flags for flag in BF16_FLAGS},
        "vendor": cpu_vendor(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 products in hardware (AMX or AVX-512 BF16)."""
    return any(cpu_flags() & set(BF16_FLAGS))


def bf16_slower_reason() -> str | None:
    """Why bf16 would compute no faster than float32 on this CPU (see the module's docstring),
    or None where it computes faster."""
    if not cpu_has_bf16_units():
        return "this CPU has no bf16 units (avx512_bf16, amx_bf16), where bf16 runs slower than float32"
    if "amx_bf16" not in cpu_flags() and cpu_vendor() == "GenuineIntel":
        return "this Intel CPU has avx512_bf16 but no AMX (amx_bf16), where bf16 runs no faster than float32"
    return None


def check_precision(device: torch.device, precision: str) -> None:
    """A ConfigError unless ``precision`` can run on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} must be one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision=fp16 needs device=cuda; on the CPU use precision=bf16")


_said: set[str] = set()


def effective_precision(device: torch.device, precision: str) -> str:
    """The precision a run computes in: ``precision``, except bf16 on a CPU where it would run no
    faster than float32, which computes in fp32 (one line on stderr says so, once per process)."""
    check_precision(device, precision)
    reason = bf16_slower_reason() if precision == "bf16" and device.type == "cpu" else None
    if reason is None:
        return precision
    if "bf16" not in _said:
        _said.add("bf16")
        print(f"elm_audio: precision=bf16: {reason}; computing in fp32", file=sys.stderr, flush=True)
    return "fp32"


def autocast(device: torch.device, precision: str):
    """Autocast to ``precision``, the one the run computes in (``effective_precision``'s answer,
    as ``network_features`` takes it); none for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def network_features(frontend: nn.Module, device: torch.device, precision: str):
    """The function extraction maps a batch of network inputs with: the front-end's features in
    ``precision``, the one the run computes in (``effective_precision``'s answer): bf16 on the CPU
    is a bf16 copy of the network, see ``in_dtype``; on CUDA the caller autocasts."""
    dtype = PRECISIONS[precision]
    if device.type != "cpu" or dtype is None:
        return frontend.features
    network = in_dtype(frontend, dtype)
    return lambda x: network.features(x.to(dtype))


def in_dtype(network: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``network`` whose convolution weights are ``dtype`` ahead of time, 2-D ones
    channels-last (the log-mel's buffers keep their precision). The spectrogram's filters (2-D,
    one input channel) are held in (frames, bands, filters) order: the layout of
    products.product_weight, which their window products then take without a copy at every
    batch (cnn_7x86 large's 602 x 3,585 filters: 5 ms of a 130 ms batch). It computes in
    ``dtype`` on inputs of that dtype; the original is left as it is."""
    copied = copy.deepcopy(network)
    for module in copied.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            module.to(dtype)
            if isinstance(module, nn.Conv2d) and module.in_channels == 1:
                # (filters, 1, frames, bands) with (frames, bands, filters) memory
                module.weight.data = module.weight.data.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
            elif isinstance(module, nn.Conv2d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return copied
