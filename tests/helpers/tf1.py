"""Weights of the original TensorFlow 1 code (jordipons/elmarc) loaded into our front-ends.

TF kernels are stored [width, in, out] (conv1d), [height, width, in, out] (conv2d, with the
spectrogram as a one-channel image of time x frequency), and the waveform back-end's
[7, channels, 1, out] (a conv2d valid across all channels, i.e. a conv1d). Both codes create
their layers in the same order; a front-end that builds only some of the original graph's
branches (timbral alone, temporal alone) takes the variables whose shapes fit, in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from elm_audio.frontends.base import FrontEnd


def torch_kernel(kernel: np.ndarray, module: nn.Module) -> np.ndarray:
    """A TF kernel in ``module``'s weight layout (out, in, *kernel)."""
    if isinstance(module, nn.Conv2d):
        return kernel.transpose(3, 2, 0, 1)
    if kernel.ndim == 4:  # the back-end's [7, channels, 1, out]
        return kernel[:, :, 0, :].transpose(2, 1, 0)
    return kernel.transpose(2, 1, 0)


@torch.no_grad()
def load_tf1_weights(frontend: FrontEnd, variables: Mapping[str, np.ndarray], order: Sequence[str]) -> FrontEnd:
    """Copy the kernels and biases named in ``order`` (TF variable names, creation order, as
    ``<layer>/kernel:0``) into the front-end's convolutions; raise if any convolution is left
    without a kernel of its shape."""
    layers = [n[: -len("/kernel:0")] for n in order if n.endswith("/kernel:0")]
    convs = [m for m in frontend.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    position = 0
    for conv in convs:
        while position < len(layers):
            layer = layers[position]
            position += 1
            kernel = torch_kernel(np.asarray(variables[f"{layer}/kernel"]), conv)
            if kernel.shape == tuple(conv.weight.shape):
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
                if conv.bias is not None:
                    conv.bias.copy_(torch.from_numpy(np.asarray(variables[f"{layer}/bias"])))
                break
        else:
            raise ValueError(f"no TF kernel left for {conv} (layers {layers})")
    return frontend
