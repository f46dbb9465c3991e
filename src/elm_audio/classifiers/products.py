"""Matrix products for the classifiers, at the CPU's float32 limit.

torch.matmul on the CPU calls MKL's sgemm, which runs AVX2 code on AMD processors even where
they have AVX-512 (this machine's Zen 5 reaches about half its float32 peak that way). oneDNN,
which torch uses for convolutions, picks its kernels by instruction set, not by vendor. A product
x @ w.T written as a 1x1 convolution over a channels-last view of x is the same float32
arithmetic (summed in another order) and, here, 2.1 times faster; ``benchmarks/run.py`` prints
both rates as ``gemm_gflops`` and ``onednn_gemm_gflops``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T + bias for 2-D x (n, k) and weight (m, k), like torch.nn.functional.linear."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return F.linear(x, weight, bias)
    (n, k), m = x.shape, weight.shape[0]
    # (1, k, n, 1) in NCHW order with channels-last strides: x's own memory, no copy
    image = x.contiguous().view(1, n, 1, k).permute(0, 3, 1, 2)
    out = F.conv2d(image, weight.contiguous().view(m, k, 1, 1), bias)
    return out.permute(0, 2, 3, 1).reshape(n, m)
