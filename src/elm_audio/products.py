"""Matrix products at the CPU's float32 limit, for the classifiers and the spectrogram filters' window products.

torch.matmul on the CPU calls MKL's sgemm, which picks its kernels by the CPU's vendor: on AMD
processors it runs AVX2 code even where they have AVX-512 (a Zen 5 reaches about half its
float32 peak that way). oneDNN, which torch uses for convolutions, picks its kernels by
instruction set. A product x @ w.T written as a 1x1 convolution over a channels-last view of x
is the same float32 arithmetic (summed in another order): 2.1 times faster than torch.matmul on
a Zen 5, 0.85 times as fast on an Intel Xeon, where MKL is at home. So the choice follows the
vendor, which keeps it the same on every run of a machine (a timed choice could flip between
runs and change the last bits). ``benchmarks/run.py`` prints both rates as ``gemm_gflops`` and
``onednn_gemm_gflops``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F


@functools.cache
def mkl_runs_avx2_only() -> bool:
    """Whether this is an AMD CPU, on which MKL's sgemm leaves AVX-512 unused."""
    try:
        return "AuthenticAMD" in Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: keep torch's own product
        return False


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T + bias for 2-D x (n, k) and weight (m, k), like torch.nn.functional.linear,
    through whichever library is faster on this CPU."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[0] and mkl_runs_avx2_only() and torch.backends.mkldnn.is_available():
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The same product as a 1x1 convolution, which oneDNN computes (float32 on the CPU)."""
    (n, k), m = x.shape, weight.shape[0]
    # (1, k, n, 1) in NCHW order with channels-last strides: x's own memory, no copy
    image = x.contiguous().view(1, n, 1, k).permute(0, 3, 1, 2)
    out = F.conv2d(image, weight.contiguous().view(m, k, 1, 1), bias)
    return out.permute(0, 2, 3, 1).reshape(n, m)


def gram(x: torch.Tensor) -> torch.Tensor:
    """x @ x.T for 2-D x, symmetric to the last bit. On the CPU by BLAS's symmetric rank-k
    update, which numpy's matmul takes for a product of an array with its own transpose (x may
    be a transposed view, as h.T for h'h): half a general product's arithmetic (torch has none;
    the SVM's 3,600 x 3,585 training kernel 0.30 s against 0.51 s)."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.shape[0]:
        rows = (x if x.T.is_contiguous() else x.contiguous()).detach().numpy()  # BLAS takes either order
        return torch.from_numpy(rows @ rows.T)
    return linear(x, x)
