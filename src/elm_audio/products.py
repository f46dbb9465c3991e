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


def onednn_is_faster(x: torch.Tensor) -> bool:
    """Whether a float32 product of x's rows goes faster through oneDNN than through torch.matmul."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[0] > 0 and mkl_runs_avx2_only() and torch.backends.mkldnn.is_available()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T + bias for 2-D x (n, k) and weight (m, k), like torch.nn.functional.linear,
    through whichever library is faster on this CPU."""
    if onednn_is_faster(x):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


def transposed_product(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x.T @ g for 2-D x (n, k) and g (n, m), a sum over the n rows (the weight gradient of
    ``linear(x, w)`` given the outputs' gradient g, transposed), through whichever library is
    faster on this CPU: on a Zen 4, oneDNN's backward-weights kernel of onednn_linear's 1x1
    convolution ran 1.1 to 1.8 times MKL's product for the frequency max-pool's shapes (n in
    the thousands, k and m in the tens to hundreds; about even at k = m = 512), and 7 times for
    the ELM's H'Y (3,600 x 2,500 hidden outputs, 10 classes: 3 ms, not 22). That kernel
    dropped to a third of its rate at some row counts (7,919, 7,922, 11,801, ...), never at a
    multiple of 64 in a scan: it takes those rows, torch.matmul the few left over."""
    (n, k), m = x.shape, g.shape[1]
    whole = n - n % 64
    if not whole or not onednn_is_faster(x):
        return x.T @ g
    image, grad_out = channels_last_image(x[:whole]), channels_last_image(g[:whole])
    shape_only = x.new_empty(m, k, 1, 1)  # the kernel's values do not enter its gradient
    _, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_out, image, shape_only, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False]
    )
    product = grad_weight.view(m, k).T
    if whole < n:
        product += x[whole:].T @ g[whole:]
    return product


def product_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (m, k) for ``linear`` calls that reuse it, in the memory layout the CPU
    multiplies fastest: for bf16 and fp16, the same (m, k) view of (k, m) row-major memory.
    oneDNN's 16-bit matmul (AMX, on an Intel Xeon) took that layout at 1.9x the rate of the
    (m, k) row-major one for cnn_7x86's window products (990 x 602 windows, 3,585 filters)
    and at about the same rate for the other shapes measured. float32 keeps its layout, which
    onednn_linear takes without a copy."""
    if weight.device.type != "cpu" or weight.element_size() != 2:
        return weight
    return weight.t().contiguous().t()


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The same product as a 1x1 convolution, which oneDNN computes (float32 on the CPU)."""
    (n, k), m = x.shape, weight.shape[0]
    out = F.conv2d(channels_last_image(x), weight.contiguous().view(m, k, 1, 1), bias)
    return out.permute(0, 2, 3, 1).reshape(n, m)


def channels_last_image(x: torch.Tensor) -> torch.Tensor:
    """2-D x (n, k) as the image of a 1x1 convolution: (1, k, n, 1) in NCHW order with
    channels-last strides, x's own memory where x is contiguous (no copy)."""
    n, k = x.shape
    return x.contiguous().view(1, n, 1, k).permute(0, 3, 1, 2)


def gram(x: torch.Tensor) -> torch.Tensor:
    """x @ x.T for 2-D x, symmetric to the last bit. On the CPU by BLAS's symmetric rank-k
    update, which numpy's matmul takes for a product of an array with its own transpose (x may
    be a transposed view, as h.T for h'h): half a general product's arithmetic (torch has none;
    the SVM's 3,600 x 3,585 training kernel 0.30 s against 0.51 s)."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.shape[0]:
        rows = (x if x.T.is_contiguous() else x.contiguous()).detach().numpy()  # BLAS takes either order
        return torch.from_numpy(rows @ rows.T)
    return linear(x, x)
