"""What every front-end shares: its input, seeded random weights, and the feature vector
made of the means of selected feature maps (docs/method.md, "Feature vector", "Weights")."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..products import linear, product_weight, transposed_product
from ..sound.decode import SAMPLE_RATE
from ..sound.dsp import LogMel
from . import compiled
from .fused import cannot_overflow, relu_amax, relu_conv2d, relu_linear
from .grad_mode import under_autograd

log = logging.getLogger(__name__)

WAVEFORM_SAMPLES = 350_000
SPECTROGRAM_FRAMES = 1_376
N_MELS = 96
HOP_LENGTH = 256

InputKind = Literal["waveform", "spectrogram"]
# How a per-position map becomes values of the vector: the mean of each channel, the original's
# per-layer quirk (see FrontEnd.tap), or the mean and standard deviation of each channel (MFCC).
Reduction = Literal["mean", "per_layer", "mean_std"]
MapHook = Callable[[str, torch.Tensor, Reduction], None]


@dataclass(frozen=True)
class LayerInfo:
    """One layer whose feature-map means enter the feature vector."""

    name: str
    shape: tuple[int, ...]  # (channels, *positions) of one clip's feature map
    n_features: int


class FrontEnd(nn.Module):
    """A random-weight CNN mapping a batch of waveforms to one feature vector per clip.

    Subclasses build their layers in ``__init__`` and implement ``features`` on the prepared
    input, passing every feature map that contributes to the vector through ``tap``. Nothing
    mixes clips of a batch (no batch normalization), so a clip's vector does not depend on
    what else is in its batch.
    """

    input_kind: ClassVar[InputKind]
    # Features that are statistics over the whole input (the MFCC baseline): under
    # audio.fit_stage=frames they are taken over the whole clip, of any length.
    whole_clip_statistics: ClassVar[bool] = False
    # Whether the pipeline fits each clip to ``input_samples``; an imported model takes the whole clip.
    fits_input: ClassVar[bool] = True
    sample_rate: int = SAMPLE_RATE  # the rate clips are decoded to
    # clips of the batch ``profile`` traces: none (shapes alone), unless the input needs one
    profile_clips: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self._trace: list[LayerInfo] | None = None
        self._on_map: MapHook | None = None
        if self.input_kind == "spectrogram":
            self.logmel = LogMel(n_mels=N_MELS, hop_length=HOP_LENGTH)

    @property
    def input_samples(self) -> int:
        """Waveform length a clip is fitted to before it enters the front-end."""
        if self.input_kind == "waveform":
            return WAVEFORM_SAMPLES
        # centred frames: 1 + samples // hop = 1,376 frames
        return (SPECTROGRAM_FRAMES - 1) * HOP_LENGTH

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one clip's input to ``features``."""
        if self.input_kind == "waveform":
            return (WAVEFORM_SAMPLES,)
        return (SPECTROGRAM_FRAMES, N_MELS)

    def prepare(self, waveform: torch.Tensor, stft_padding: str = "zeros") -> torch.Tensor:
        """(batch, samples) waveform -> the front-end's input (waveform or log-mel; the STFT pads
        the signal's ends with ``stft_padding``)."""
        if self.input_kind == "spectrogram":
            return self.logmel(waveform, stft_padding)
        return waveform

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.features(self.prepare(waveform))

    def tap(self, name: str, fmap: torch.Tensor, per_layer: bool = False) -> torch.Tensor:
        """Mean of every feature map of ``fmap`` (batch, channels, *positions) -> (batch, channels).

        ``per_layer``: the original code's frame-level quirk (docs/method.md, "The original code,
        exactly"): one value, the mean over the positions and all channels, followed by
        channels - 1 zeros, so the vector keeps its length."""
        if self._trace is not None:
            self._trace.append(LayerInfo(name, tuple(fmap.shape[1:]), int(fmap.shape[1])))
        if self._on_map is not None:
            self._on_map(name, fmap, "per_layer" if per_layer else "mean")
        means = map_means(fmap.flatten(2))
        if per_layer:
            return F.pad(means.mean(dim=1, keepdim=True), (0, means.shape[1] - 1))
        return means

    def trace(self, x: torch.Tensor) -> list[LayerInfo]:
        """Run ``features`` on a prepared input and list the layers that were tapped (while
        tracing, a layer with a faster formulation of other FLOPs takes its plain one)."""
        self._trace = []
        try:
            self.features(x)
            return self._trace
        finally:
            self._trace = None

    @contextmanager
    def maps(self, hook: MapHook) -> Iterator[None]:
        """While inside, every map that enters the vector is also handed to ``hook`` whole, with
        the reduction that makes it values of the vector (timestamp embeddings pool the maps
        over windows of positions instead of over all of them). Time is the maps' third axis."""
        self._on_map = hook
        try:
            yield
        finally:
            self._on_map = None

    def trainable(self) -> "FrontEnd":
        """The same network with gradients on (weights=trained)."""
        return self.requires_grad_(True)

    @torch.no_grad()
    def init_weights(self, seed: int) -> "FrontEnd":
        """TensorFlow 1's variance_scaling_initializer defaults: truncated normal (cut at two
        standard deviations) with std sqrt(1.3 * 2 / fan_in); biases zero. Drawn on the CPU
        in module order from one generator, so a seed gives the same weights everywhere.
        The weights are never trained, so they need no gradients."""
        generator = torch.Generator().manual_seed(int(seed))
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                weight = module.weight
                fan_in = weight[0].numel()
                std = math.sqrt(1.3 * 2.0 / fan_in)
                cpu = torch.empty(weight.shape, dtype=torch.float32)
                nn.init.trunc_normal_(cpu, 0.0, std, -2 * std, 2 * std, generator=generator)
                weight.copy_(cpu)
                if module.bias is not None:
                    module.bias.zero_()
        return self.requires_grad_(False)


# 16-bit maps are averaged this many values at a time (512 KB of bf16)
MEAN_SLICE_VALUES = 1 << 18


def map_means(flat: torch.Tensor) -> torch.Tensor:
    """The mean over the last axis of flat (batch, channels, positions), in float32. torch
    converts a whole bf16 map to float32 before summing it; a slice of positions at a time
    stays in the cache (sample_level large's stem map, 2 clips: 73 ms whole, 26 in slices). Off
    the CPU one reduction: a GPU takes the whole map in one kernel."""
    if under_autograd(flat):  # the sum's gradient is a broadcast view, where mean's divides a full map
        return flat.sum(dim=-1, dtype=torch.float32) / flat.shape[-1]
    if flat.element_size() > 2 or flat.device.type != "cpu":
        return flat.mean(dim=-1, dtype=torch.float32)
    step = max(1, MEAN_SLICE_VALUES // max(1, flat.shape[0] * flat.shape[1]))
    sums = torch.stack([part.sum(dim=-1, dtype=torch.float32) for part in flat.split(step, dim=-1)])
    return sums.sum(dim=0) / flat.shape[-1]  # the slices' sums summed pairwise, as one sum's would be


# None: each layer takes the forms of its input's device (plain_forms); True or False: the forms
# every layer takes on any device, while inside ``forms`` (to compare the two on one device)
_FORMS: ContextVar[bool | None] = ContextVar("elm_audio_plain_forms", default=None)


def plain_forms(x: torch.Tensor) -> bool:
    """Whether layers computing on ``x`` take their plain forms, one convolution and one
    reduction each, rather than the loops tuned for a CPU's caches (a product or convolution per
    few pooling windows, frequency offset or frame chunk). Plain on every device but the CPU:
    on CUDA each of those loops' iterations is a kernel launch that leaves the GPU idle, where
    cuDNN computes the whole map at once near its peak rate. The meta device (shapes alone,
    where torch's FLOP counter runs) takes the CPU's forms, whose FLOPs ``profile`` counts: the
    plain forms' zero padding would add to them."""
    forced = _FORMS.get()
    return x.device.type not in ("cpu", "meta") if forced is None else forced


@contextmanager
def forms(plain: bool) -> Iterator[None]:
    """While inside, every layer takes its plain forms (``plain``) or the CPU's loops, whatever
    its input's device: the same features either way (tests/test_device_paths.py)."""
    token = _FORMS.set(plain)
    try:
        yield
    finally:
        _FORMS.reset(token)


def pad_same(x: torch.Tensor, kernel: int, stride: int = 1) -> torch.Tensor:
    """TensorFlow's 'same' padding along the last axis (the odd extra sample goes last)."""
    length = x.shape[-1]
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return F.pad(x, (total // 2, total - total // 2))


# The window products are computed a few frames at a time: each chunk's windows and products
# take about this many bytes. 1-frame filters' chunks are nearly all products, which the maximum
# reads again at once: in 3 MB they stay in the cores' L2 caches (Zen 4, 2 cores: 1.2-1.8x the
# rate of 8 MB chunks while other tenants load the memory). Longer windows' chunks are mostly
# windows, which the product reads once: 8 MB chunks ran 1.1x faster than 3 MB ones.
WINDOW_BYTES = 8 << 20
ONE_FRAME_BYTES = 3 << 20
# Window products replace the per-offset convolutions where a window's values (frames x bands)
# are few for the filters: products of few outputs per row, with a long inner dimension, ran
# below oneDNN's convolution kernels. Measured on a Zen 4 at batch 2 (GFLOP/s, convolutions
# against products): inference fp32 1x38, 512 filters 129 vs 160; 7x86, 3,585 filters 174 vs
# 179; 7x86, 128 filters 211 vs 196; 3x38, 256 filters 192 vs 185 (bf16 alike); 1-frame
# filters take the products however few (1x86, 16 filters at batch 8: 18 vs 37). Training
# builds one gradient product where the convolutions build two, so there the products win more:
# always in float32 and float64 (1x38: 1.7x, 3x38: 1.2x, 7x86 1.0-1.1x), in 16-bit floats
# down to twice the window (bf16: 1x38 1.9x, 3x38 1.3x; 7x86, 128 filters 0.7x; 3,585 1.3x).
# In bf16 and fp16 (weights in products.product_weight's layout), products win from about as
# many filters as a window has values: on an Intel Xeon with AMX, batch 2 (GFLOP/s, products
# against convolutions), 3x86, 256 filters (258 window values) 728 vs 565 and 562 vs 492; 3x38,
# 256: 442 vs 380; 7x38, 128: 558 vs 568; 7x86, 128: 747 vs 841.
INFERENCE_PRODUCTS = 4
INFERENCE_HALF_PRODUCTS = 0.9
TRAINING_HALF_PRODUCTS = 2
# Inference of filters taller than one frame with at least this many frequency offsets takes
# frame_channels_max (timbral_temporal's 38-band filters: 59 offsets). On an Intel Xeon with
# AMX, batch 2, GFLOP/s against the form each took before (medians of 5 interleaved runs):
# fp32 7x38, 128 filters 212 vs 174; 3x38, 256: 185 vs 138; bf16 7x38 585 vs 302; 3x38 354 vs
# 269. With 11 offsets (86 bands) the other forms kept up or won (fp32 3x86, 256 filters: 153
# vs 194; cnn_7x86 large: 154 vs 222), and so did 1-frame filters (one input channel).
FRAME_CHANNEL_OFFSETS = 32
# Inference in float32 of at least KERNEL_OFFSETS offsets and KERNEL_BLOCKS blocks of filters
# takes compiled.kernel() where it could be built. On an Intel Xeon with AMX, batch 2 (GFLOP/s,
# kernel vs library): timbral_temporal large 250 vs 187-201, timbral large 275 vs 180, cnn_7x86
# large 308 vs 261-268; with 4 to 16 filters (timbral_temporal small) 33 vs 38, padded to a
# block of 32; one offset (cnn_7x96) is one convolution over time at the matmul rate.
KERNEL_OFFSETS = 2
KERNEL_BLOCKS = 4


def frequency_max_conv(spec: torch.Tensor, conv: nn.Conv2d, pad_time: int = 0, relu: bool = False) -> torch.Tensor:
    """max over frequency positions of a one-channel (frames x bands) convolution of a
    spectrogram (batch, frames, mels), valid in frequency: (batch, filters, frames').

    The unpooled map (filters x frames x offsets) is never held whole. In float32 inference on
    the CPU, with many filters, it is never written at all: compiled.kernel() keeps each block's
    products in registers and writes their maximum (KERNEL_OFFSETS, KERNEL_BLOCKS). Otherwise
    three forms on the CPU, chosen by the layer's shape and precision (FRAME_CHANNEL_OFFSETS,
    INFERENCE_PRODUCTS, INFERENCE_HALF_PRODUCTS, TRAINING_HALF_PRODUCTS): in inference, for many offsets, one
    convolution along the mels with the filter's frames as channels (frame_channels_max); window
    products (window_max), every frame's window at every offset times every filter, a few
    frames at a time, maximized at once; or per-offset convolutions (channels_last_max) with the
    mel bands as input channels, a 1-D convolution over time at each offset and a running
    maximum. Each runs near the matmul rate where a one-input-channel 2-D convolution does not.
    Under autograd, WindowMax and FrequencyMaxConv keep only which offset won; few filters take
    banded_max_conv. A filter as tall as the spectrogram (one offset) is one convolution over
    time: cnn_7x96's, 3,585 filters, ran at 298 GFLOP/s in float32 and 1,951 in bf16 that way,
    against 176 and 488 as window products (an Intel Xeon with AMX, batch 2). ``relu``: the ReLU
    of the result (it commutes with the maximum), which frame_channels_max and bf16 window
    products fuse into their products (window_max). Off the CPU, all of this is
    plain_frequency_max_conv.
    """
    if plain_forms(spec):
        return activated(plain_frequency_max_conv(spec, conv.weight, conv.bias, pad_time), relu)
    frames, bands = conv.kernel_size
    filters, offsets, window = conv.out_channels, spec.shape[2] - bands + 1, frames * bands
    weight = conv.weight[:, 0]  # (filters, frames, bands)
    if under_autograd(spec, conv.weight):
        if offsets * filters <= BANDED_COLUMNS:
            return activated(banded_max_conv(time_padded(spec, pad_time, channels_first=True), weight.transpose(1, 2), conv.bias), relu)
        if frames == 1 and offsets >= GATHERED_OFFSETS and trains_in_float32(spec, conv.weight):
            with autocast_off(spec.device):
                return activated(WindowMax.apply(time_padded(spec, pad_time), weight, conv.bias), relu)
        if computing_dtype(conv.weight).itemsize > 2 or filters >= TRAINING_HALF_PRODUCTS * window:
            return activated(WindowMax.apply(time_padded(spec, pad_time), weight, conv.bias), relu)
        return activated(FrequencyMaxConv.apply(time_padded(spec, pad_time, channels_first=True), weight.transpose(1, 2), conv.bias), relu)
    if (fused := kernel_for(spec, conv.weight) or kernel_for(spec, conv.weight, torch.bfloat16)) is not None:
        in_range = cannot_overflow(spec, [(weight.reshape(filters, -1), conv.bias)])
        if isinstance(fused, compiled.Kernel):
            return fused.frequency_max(time_padded(spec, pad_time), conv.weight, conv.bias, relu, not in_range)
        if in_range:  # the AMX tiles read past a window's bands: every value must be finite
            return fused.frequency_max(spec, pad_time, conv.weight, conv.bias, relu)
    if frames > 1 and offsets >= FRAME_CHANNEL_OFFSETS and spec.shape[0]:
        return frame_channels_max(time_padded(spec, pad_time), weight, conv.bias, relu)
    products = INFERENCE_HALF_PRODUCTS if computing_dtype(conv.weight).itemsize == 2 else INFERENCE_PRODUCTS
    if frames == 1 or (offsets > 1 and filters >= products * window):
        return window_max(time_padded(spec, pad_time), weight, conv.bias, relu)
    return activated(channels_last_max(time_padded(spec, pad_time, channels_first=True), weight.transpose(1, 2), conv.bias), relu)


def kernel_for(spec: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype = torch.float32):
    """The compiled kernel for ``dtype`` (float32: compiled.kernel(); bf16: compiled.amx_kernel())
    where a layer of filters ``weight`` (filters, [1,] frames, bands) over ``spec`` (batch,
    frames', mels) takes it: on the CPU, computing in that dtype, a batch, at least
    KERNEL_OFFSETS offsets and KERNEL_BLOCKS blocks of filters, and a kernel built."""
    if not (
        spec.device.type == "cpu"
        and computing_dtype(weight) == spec.dtype == dtype
        and spec.shape[0]
        and spec.shape[2] - weight.shape[-1] + 1 >= KERNEL_OFFSETS
    ):
        return None
    fused = compiled.kernel() if dtype == torch.float32 else compiled.amx_kernel() if dtype == torch.bfloat16 else None
    return fused if fused is not None and weight.shape[0] >= KERNEL_BLOCKS * fused.block_filters else None


def trains_in_float32(spec: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a layer of 1-frame filters with many offsets, trained under bf16 autocast, keeps
    float32 instead: the kernel's forward and the winning windows' gradient in float32 beat
    bf16's window products (timbral_temporal large's 1x38 filters, forward and backward, batch
    2, an Intel Xeon with AMX: 64 against 106 ms; its step then faster in bf16 than in float32,
    where it had been slower). Logged once per shape."""
    if not (autocasting(spec.device) and spec.dtype == weight.dtype == torch.float32):
        return False
    with autocast_off(spec.device):
        if kernel_for(spec, weight) is None:
            return False
    said_float32(tuple(weight.shape))
    return True


@functools.cache
def said_float32(shape: tuple[int, ...]) -> None:
    log.info("%d filters of %dx%d train in float32 under bf16 autocast: the compiled kernel is faster there", shape[0], *shape[-2:])


def activated(h: torch.Tensor, relu: bool) -> torch.Tensor:
    """h, or its ReLU in place (``relu``)."""
    return F.relu_(h) if relu else h


def time_padded(spec: torch.Tensor, pad: int, channels_first: bool = False) -> torch.Tensor:
    """spec (batch, frames, mels) zero-padded by ``pad`` frames at each end: as it is, or
    (batch, mels, frames) contiguous for the per-offset convolutions (mels as channels)."""
    if channels_first:
        return F.pad(spec.transpose(1, 2), (pad, pad)).contiguous()
    return F.pad(spec, (0, 0, pad, pad)) if pad else spec


def autocasting(device: torch.device) -> bool:
    return torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type)


def computing_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype a layer with ``weight`` computes in: autocast's where it is on."""
    return torch.get_autocast_dtype(weight.device.type) if autocasting(weight.device) else weight.dtype


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off while inside, where it was on: a Function computing in computing_dtype."""
    return torch.autocast(device.type, enabled=False) if autocasting(device) else contextlib.nullcontext()


# cuDNN's tensor-core kernels load channels in 16-byte groups, 8 values of bf16 or fp16 (4 of
# float32): the plain forms give a layer a multiple of 8 filters, zero filters added, where its
# own count is not one (vgg large's 717 -> 720, cnn_7x86's 3,585 -> 3,592; 0.2-0.4% more
# multiply-adds), rather than leave cuDNN a kernel for any alignment.
CHANNEL_MULTIPLE = 8


def padded_filters(
    weight: torch.Tensor, bias: torch.Tensor | None, in_channels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``weight`` (filters, channels, *kernel) and ``bias`` with zero filters up to a multiple of
    CHANNEL_MULTIPLE, and zero input channels up to ``in_channels`` (the zero filters a padded
    layer before passed on). A zero filter with a zero bias gives a zero map, which ReLU, ELU
    and the max-pools keep at zero: the real filters' maps are unchanged, the caller drops the
    added ones before taking means."""
    extra = -weight.shape[0] % CHANNEL_MULTIPLE
    extra_in = 0 if in_channels is None else in_channels - weight.shape[1]
    if not extra and not extra_in:
        return weight, bias
    weight = F.pad(weight, (0, 0) * (weight.dim() - 2) + (0, extra_in, 0, extra))
    return weight, None if bias is None else F.pad(bias, (0, extra))


def one_channel_conv1d(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv(x)`` for a one-channel signal x (batch, 1, samples), a convolution of stride 1
    without padding: (batch, filters, positions), as one product of every window of the
    kernel's taps (batch, positions, taps) with the filters (filters, taps). Its plain form (see
    ``plain_forms``) pads the taps with zeros to a multiple of CHANNEL_MULTIPLE: a GEMM with the
    taps as its inner dimension, which tensor cores take, where the one-input-channel
    convolution gives cuDNN rows one value wide. On the CPU, in inference, the product goes
    through products.linear: 1.5 times oneDNN's convolution in float32 at batch 8 (as fast at
    1 and 2 alone, 4 times as fast in timbral_temporal's forward, where the convolution's output
    came from freshly mapped memory at every call), 1.2 to 1.7 times in bf16 at 2 to 16
    (timbral_temporal large's temporal filters, Zen 4). Under autograd the CPU keeps the
    convolution, 1.3 to 1.5 times the product's rate in float32 training, and so does profile's
    empty batch, whose FLOPs the convolution's count gives per position."""
    weight = conv.weight[:, 0]
    taps = weight.shape[-1]
    if plain_forms(x):
        extra = -taps % CHANNEL_MULTIPLE
        windows = F.pad(x[:, 0].unfold(-1, taps, 1), (0, extra))
        return F.linear(windows, F.pad(weight, (0, extra)), conv.bias).transpose(1, 2)
    if under_autograd(x, conv.weight) or not x.shape[0]:
        return conv(x)
    windows = x[:, 0].unfold(-1, taps, 1)
    products = linear(windows.reshape(-1, taps), weight, conv.bias)
    return products.view(*windows.shape[:2], weight.shape[0]).transpose(1, 2)


def plain_frequency_max_conv(
    spec: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad_time: int = 0
) -> torch.Tensor:
    """frequency_max_conv's plain form (see ``plain_forms``): one convolution, one maximum.

    The mel bands are the input channels and the frequency offsets a spatial axis: every
    offset's window of the spectrogram, (batch, bands, frames, offsets), convolved with the
    filters as (frames x 1) kernels over ``bands`` channels: a GEMM of (bands x frames) by
    filters, the shape cuDNN's implicit-GEMM kernels are built for, where the one-channel 2-D
    convolution gives them rows one value wide. Channels-last, with the bands padded with zeros
    to a multiple of 8 (16-byte rows of bf16, the alignment tensor-core kernels load; the zeros
    add nothing to the sums), and the filters too (``padded_filters``). Under autograd the
    maximum is torch.max, whose backward follows the offset it kept."""
    filters, bands = weight.shape[0], weight.shape[-1]
    if pad_time:
        spec = F.pad(spec, (0, 0, pad_time, pad_time))
    windows = spec.unfold(2, bands, 1)  # (batch, frames, offsets, bands)
    extra = -bands % CHANNEL_MULTIPLE
    windows = F.pad(windows, (0, extra)) if extra else windows.contiguous()
    kernel, bias = padded_filters(F.pad(weight, (0, extra)), bias)  # (filters', 1, frames, bands')
    # channels-last views: (batch, bands, frames, offsets) and (filters, bands, frames, 1)
    h = F.conv2d(windows.permute(0, 3, 1, 2), kernel.permute(0, 3, 2, 1), bias)[:, :filters]
    return h.max(dim=3).values if under_autograd(h) else h.amax(dim=3)


# Training with at most this many (offset, filter) outputs per frame takes banded_max_conv.
BANDED_COLUMNS = 1024
# banded_max_conv's product is computed this many values at a time (16 MB in float32)
BANDED_CHUNK = 1 << 22


def banded_max_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """frequency_max_conv for training few filters: x (batch, mels, frames), weight (filters,
    bands, frames), under autograd. A few filters make many small convolutions, one per offset,
    each dominated by copying its window; here every offset is one product of each frame's
    window (all mels x the filter's frames) with a banded (Toeplitz) matrix that holds every
    filter at every offset. It multiplies zeros outside each band (mels / bands times the
    FLOPs), yet with 4 to 16 filters runs twice as fast as the convolutions; with more, the
    zeros cost more than they save. torch.max keeps the first offset on ties, as max_pool2d."""
    filters, bands, frames = weight.shape
    batch, mels, length = x.shape
    offsets = mels - bands + 1
    # banded[(o, k), (m, s)] = weight[k, m - o, s] for 0 <= m - o < bands, else 0
    padded = F.pad(weight.permute(1, 0, 2), (0, 0, 0, 0, offsets - 1, mels - bands))  # (bands + ..., filters, frames)
    banded = padded.unfold(0, offsets, 1).flip(-1)  # (mels, filters, frames, offsets): [m, k, s, o] = padded[m + offsets-1-o]
    banded = banded.permute(3, 1, 0, 2).reshape(offsets * filters, mels * frames)
    windows = x.unfold(2, frames, 1).transpose(1, 2).reshape(-1, mels * frames)  # (batch * frames', mels * frames)
    rows = max(1, BANDED_CHUNK // (offsets * filters))
    # F.linear, not products.linear: its backward (MKL's products) measured faster here than
    # the oneDNN convolution's weight gradient that products.linear would take on AMD CPUs
    pooled = [
        F.linear(windows[r0 : r0 + rows], banded).view(-1, offsets, filters).max(dim=1).values
        for r0 in range(0, windows.shape[0], rows)
    ]
    out = torch.cat(pooled).view(batch, -1, filters).transpose(1, 2)
    return out if bias is None else out + bias[:, None]


def windows_of(x: torch.Tensor, frames: int, bands: int, t0: int, t1: int) -> torch.Tensor:
    """The frames x bands windows of x (batch, frames', mels) starting at frames t0 to t1, at
    every frequency offset: a view (batch, t1 - t0, offsets, frames, bands)."""
    return x[:, t0 : t1 + frames - 1].unfold(1, frames, 1).unfold(2, bands, 1)


def window_products(
    x: torch.Tensor, kernel: torch.Tensor, frames: int, t0: int, t1: int, bias: torch.Tensor | None = None, relu: bool = False
) -> torch.Tensor:
    """Every window of ``frames`` x bands of x (batch, frames', mels) starting at frames t0 to t1
    and at every frequency offset, times every filter of ``kernel`` (filters, frames * bands):
    (batch, t1 - t0, offsets, filters), one 2-D product through the CPU's faster library
    (products.linear), where torch.matmul of the window view ran at half the rate; plus
    ``bias``, and with ``relu`` their ReLU, which oneDNN applies as it writes them
    (fused.relu_linear: the caller has checked cannot_overflow)."""
    windows = windows_of(x, frames, kernel.shape[1] // frames, t0, t1)
    if not x.shape[0]:  # profile's empty batch: a product whose output keeps the batch axis FlopCount reads
        return torch.matmul(windows.flatten(3), kernel.t())
    rows = windows.reshape(-1, kernel.shape[1])
    products = relu_linear(rows, kernel, bias, in_range=True) if relu else linear(rows, kernel, bias)
    return products.view(*windows.shape[:3], -1)


def chunk_frames(x: torch.Tensor, weight: torch.Tensor) -> int:
    """How many frames of x (batch, frames', mels) window_products takes at once for filters
    ``weight`` (filters, frames, bands): about WINDOW_BYTES (ONE_FRAME_BYTES) of windows and
    their products."""
    filters, frames, bands = weight.shape
    per_frame = max(x.shape[0], 1) * (x.shape[2] - bands + 1) * (filters + frames * bands) * x.element_size()
    return max(1, (ONE_FRAME_BYTES if frames == 1 else WINDOW_BYTES) // per_frame)


def window_chunks(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False
) -> Iterator[torch.Tensor]:
    """window_products of x (batch, frames', mels), time already padded, and ``weight``
    (filters, frames, bands), with ``bias`` and ``relu``, chunk_frames frames at a time."""
    filters, frames, _ = weight.shape
    kernel = product_weight(weight.reshape(filters, -1))
    length, step = x.shape[1] - frames + 1, chunk_frames(x, weight)
    for t0 in range(0, length, step):
        yield window_products(x, kernel, frames, t0, min(t0 + step, length), bias, relu)


def window_max(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False) -> torch.Tensor:
    """frequency_max_conv's products form: x (batch, frames', mels), time already padded;
    weight (filters, frames, bands): (batch, filters, frames' - frames + 1), its ReLU where
    ``relu``. In bf16 the ReLU and the bias enter the products, applied as oneDNN writes them
    (a post-op, where each was a pass over the maxima: bf16's elementwise kernels run at a third
    of float32's rate; cnn_7x86 large, batch 2, 9 of 120 ms), wherever cannot_overflow shows
    no product can overflow (a fused ReLU turns NaN into 0); the maxima of those products are
    then relu_amax's (cnn_7x86 large, bf16, batch 2: 93 -> 82 ms)."""
    fused = (
        relu
        and computing_dtype(weight) == torch.bfloat16
        and cannot_overflow(x, [(weight.reshape(weight.shape[0], -1), bias)])
    )
    out, t0 = None, 0
    for products in window_chunks(x, weight, bias if fused else None, fused):  # each chunk's maxima written in place
        if out is None:  # in the products' dtype: bf16 under autocast
            out = products.new_empty(x.shape[0], x.shape[1] - weight.shape[1] + 1, weight.shape[0])  # (batch, frames, filters)
        maxima = out[:, t0 : t0 + products.shape[1]]
        (relu_amax if fused else torch.amax)(products, dim=2, out=maxima)
        t0 += products.shape[1]
    if bias is not None and not fused:
        out += bias
    return activated(out, relu and not fused).transpose(1, 2)  # (batch, filters, frames), channels-last


def frame_channels_max(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False) -> torch.Tensor:
    """frequency_max_conv's form for many offsets: x (batch, frames', mels), time already
    padded; weight (filters, frames, bands): (batch, filters, frames' - frames + 1), its ReLU
    where ``relu``. Each output frame's input rows are a one-pixel-tall image, the filter's
    frames as its channels and the mels as its width, channels-last (a copy of ``frames`` rows a
    frame, where window products copy every offset's window): one oneDNN convolution along the
    mels gives every offset of a chunk of frames, maximized while in the cache (about
    WINDOW_BYTES of maps). With ``relu``, in 16-bit floats, wherever cannot_overflow allows,
    the convolution applies it as it writes (fused.relu_conv2d) and relu_amax maximizes
    (timbral_temporal large, bf16, batch 2, with window_max's: 93 -> 71 ms; in float32 the
    fused convolution ran 0-5% slower); otherwise bf16's maps are maximized by max_pool2d,
    whose kernel runs along the channels (1.1 to 1.2 times amax's rate here), and the ReLU
    acts on the maxima."""
    filters, frames, bands = weight.shape
    batch, padded, mels = x.shape
    offsets, length = mels - bands + 1, padded - frames + 1
    fused = relu and computing_dtype(weight).itemsize == 2 and cannot_overflow(x, [(weight.reshape(filters, -1), bias)])
    # (filters, frames, 1, bands) with channels-last strides: (filters, 1, bands, frames) in memory
    kernel = weight.transpose(1, 2).contiguous().unsqueeze(1).permute(0, 3, 1, 2)
    step = max(1, WINDOW_BYTES // (batch * offsets * filters * x.element_size()))
    out = None
    for t0 in range(0, length, step):
        t1 = min(t0 + step, length)
        rows = x[:, t0 : t1 + frames - 1].unfold(1, frames, 1).contiguous()  # (batch, t, mels, frames)
        image = rows.view(-1, 1, mels, frames).permute(0, 3, 1, 2)
        # (batch * t, filters, 1, offsets)
        h = relu_conv2d(image, kernel, bias, (0, 0), in_range=True) if fused else F.conv2d(image, kernel, bias)
        if out is None:  # in the maps' dtype: bf16 under autocast
            out = h.new_empty(batch, length, filters)
        if h.element_size() == 2 and not fused:
            out[:, t0:t1] = F.max_pool2d(h, (1, offsets)).view(batch, t1 - t0, filters)
        else:  # channels-last maps: (batch, t, offsets, filters) in memory
            maps = h.permute(0, 2, 3, 1).reshape(batch, t1 - t0, offsets, filters)
            (relu_amax if fused else torch.amax)(maps, dim=2, out=out[:, t0:t1])
    return activated(out, relu and not fused).transpose(1, 2)  # (batch, filters, frames), channels-last


def bias_gradient(ctx, grad: torch.Tensor) -> torch.Tensor | None:
    """The bias's gradient for the max-pool Functions (ctx.dtypes: the inputs' dtypes), where it
    is asked for: the output's gradient (batch, filters, frames) summed in float32 at least."""
    bias_dtype = ctx.dtypes[2]
    if bias_dtype is None or not ctx.needs_input_grad[2]:
        return None
    return grad.sum(dim=(0, 2), dtype=torch.promote_types(grad.dtype, torch.float32)).to(bias_dtype)


# WindowMax's filter gradient for 1-frame filters, where the input needs none (the spectrogram),
# from the winning windows alone where at least this many offsets compete: the product of every
# window with the outputs' gradient (zero at all offsets but the winner's) costs offsets times the
# multiply-adds. Measured on a Zen 4 (float32, batch 2, a layer's forward and backward): 1x38, 512
# filters (59 offsets) 250 -> 105-172 ms; 1x86 (11 offsets) the same either way; 3x38 and 7x38
# filters ran slower from their winners (168-201 against 145-163 ms): a row copy per frame.
GATHERED_OFFSETS = 25


def winning_windows_gradient(x: torch.Tensor, won: torch.Tensor, g: torch.Tensor, t0: int, bands: int) -> torch.Tensor:
    """The gradient (filters, bands) of 1-frame filters over the outputs at frames t0 to t0 + t
    whose gradient is ``g`` (batch, t, filters): each output's gradient times the window that
    won its maximum, x (batch, frames', mels) at offsets ``won`` (batch, t, filters). A window is
    a run of ``bands`` consecutive values of x, so the winners are rows picked from one view of x
    (index_select copies whole rows: 10 times torch.gather's rate here)."""
    batch, padded, mels = x.shape
    t, filters = won.shape[1:]
    rows = x.reshape(-1).unfold(0, bands, 1)  # every run of ``bands`` consecutive values
    first = (torch.arange(batch, device=x.device)[:, None] * padded + torch.arange(t0, t0 + t, device=x.device)) * mels
    starts = (first[:, :, None] + won.long()).reshape(-1)  # (batch * t * filters) windows' first values
    picked = rows.index_select(0, starts) * g.reshape(-1, 1)
    return picked.view(batch * t, filters, bands).sum(0)


def maxima_and_winners(products: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The maximum over the second-to-last axis of contiguous ``products`` (..., n, channels)
    and the first position that reached it (int64), each (..., channels): max_pool2d over the
    products viewed channels-last (rows, channels, n, 1), whose kernel runs along the channels
    and finds both in one pass (4 to 6 times an amax, a comparison with it and a countdown's
    amax). The first of equal values wins, as in max_pool2d elsewhere."""
    *lead, n, channels = products.shape
    image = products.view(-1, n, 1, channels).permute(0, 3, 1, 2)
    top, index = F.max_pool2d(image, (n, 1), return_indices=True)
    return top.view(*lead, channels), index.view(*lead, channels)


class WindowMax(torch.autograd.Function):
    """window_max for training: forward keeps, per output, the frequency offset that won (one
    byte), not the products; backward builds each chunk's gradient of the products (the output's
    gradient at the offset that won, zero elsewhere) and multiplies it with the chunk's windows
    for the filters' gradient: one product as large as the forward's, where gradients through
    the convolution at every offset cost two. The first offset wins ties, as in max_pool2d.
    Under autocast it computes in the autocast dtype and returns gradients in the inputs' own
    (master) dtypes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        dtype = computing_dtype(weight)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        offsets = x.shape[2] - weight.shape[2] + 1
        with autocast_off(x.device):
            # contiguous once: the backward's winning windows are runs of its flat memory
            xc, wc = x.to(dtype).contiguous(), weight.to(dtype)
            # the kernels' winners are bytes; tt large's step: 505 -> 358-368 ms in float32
            fused = (kernel_for(xc, wc) or kernel_for(xc, wc, torch.bfloat16)) if offsets < 256 else None
            in_range = fused is not None and cannot_overflow(xc, [(wc.reshape(wc.shape[0], -1), bias)])
            if isinstance(fused, compiled.Kernel):
                out, won = fused.maxima_and_winners(xc, wc, bias, not in_range)
            elif in_range:  # AMX, where every value is finite
                out, won = fused.maxima_and_winners(xc, wc, bias)
            else:
                # maxima and winners written in place, as window_max's: kept chunk by chunk in lists
                # and concatenated, each chunk's products took 350 us instead of 245 (timbral_temporal
                # large's 1x38 filters, batch 2; its step 9% longer). Not page faults (measured); the
                # products' memory, reused at once, stays in the cache, we think
                small = torch.uint8 if offsets < 256 else torch.int16
                shape = (x.shape[0], x.shape[1] - weight.shape[1] + 1, weight.shape[0])  # (batch, frames, filters)
                out, won, t0 = xc.new_empty(shape), torch.empty(shape, dtype=small, device=x.device), 0
                for products in window_chunks(xc, wc):
                    t1 = t0 + products.shape[1]
                    out[:, t0:t1], won[:, t0:t1] = maxima_and_winners(products)
                    t0 = t1
                out = out.transpose(1, 2)
                if bias is not None:
                    out = out + bias.to(dtype)[:, None]
        ctx.save_for_backward(xc, wc, won)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xc, wc, won = ctx.saved_tensors
        x_dtype, w_dtype, _ = ctx.dtypes
        filters, frames, bands = wc.shape
        kernel = wc.reshape(filters, -1)
        batch, padded, mels = xc.shape
        offsets, length, step = mels - bands + 1, padded - frames + 1, chunk_frames(xc, wc)
        g = grad.to(kernel.dtype).transpose(1, 2)  # (batch, frames, filters)
        accumulate = torch.promote_types(kernel.dtype, torch.float32)
        grad_w = kernel.new_zeros(kernel.shape[::-1], dtype=accumulate) if ctx.needs_input_grad[1] else None
        grad_x = torch.zeros_like(xc, dtype=accumulate) if ctx.needs_input_grad[0] else None
        winners_only = grad_x is None and frames == 1 and offsets >= GATHERED_OFFSETS and kernel.dtype.itemsize > 2
        for t0 in range(0, length, step):
            t1 = min(t0 + step, length)
            if winners_only:
                grad_w += winning_windows_gradient(xc, won[:, t0:t1], g[:, t0:t1], t0, bands).T
                continue
            per_product = g.new_zeros(batch, t1 - t0, offsets, filters)
            per_product.scatter_(2, won[:, t0:t1, None].long(), g[:, t0:t1, None])
            per_product = per_product.view(-1, filters)
            windows = windows_of(xc, frames, bands, t0, t1)
            if grad_w is not None:
                grad_w += transposed_product(windows.reshape(per_product.shape[0], -1), per_product)
            if grad_x is not None:  # each window's gradient, summed back where the windows overlap
                per_window = (per_product @ kernel).view(batch, t1 - t0, offsets, frames * bands)
                columns = per_window.permute(0, 3, 1, 2).reshape(batch, frames * bands, -1)
                grad_x[:, t0 : t1 + frames - 1] += F.fold(columns, (t1 - t0 + frames - 1, mels), (frames, bands))[:, 0]
        return (
            None if grad_x is None else grad_x.to(x_dtype),
            None if grad_w is None else grad_w.T.reshape(-1, frames, bands).to(w_dtype),
            bias_gradient(ctx, grad),
        )


def channels_last_max(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """frequency_max_conv's running maximum with channels-last maps, the layout oneDNN's kernels
    take without reordering (bf16's, and float32's: 3% faster than 1-D convolutions on
    channels-first slices, which oneDNN copied at every offset): x (batch, mels, frames), weight
    (filters, bands, frames)."""
    bands = weight.shape[1]
    kernel = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (filters, bands, 1, frames)
    image = x.unsqueeze(2)  # (batch, mels, 1, frames)
    out = None
    for f0 in range(x.shape[1] - bands + 1):
        window = image[:, f0 : f0 + bands].contiguous(memory_format=torch.channels_last)
        h = F.conv2d(window, kernel, bias)
        out = h if out is None else torch.maximum(out, h, out=out)
    return out.squeeze(2)


class FrequencyMaxConv(torch.autograd.Function):
    """frequency_max_conv for training: forward keeps the running maximum and, per output,
    the offset that won (one byte), not every offset's map; backward sends each output's
    gradient through the convolution at that offset alone, as a max-pool's backward does
    (the first offset wins ties, as in max_pool2d). Under autocast it computes in the
    autocast dtype and returns gradients in the weights' own (master) dtype."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        dtype = computing_dtype(weight)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        with autocast_off(x.device):
            xc, wc = x.to(dtype), weight.to(dtype)
            bc = None if bias is None else bias.to(dtype)
            bands = weight.shape[1]
            out, won = None, None
            for f0 in range(x.shape[1] - bands + 1):
                h = F.conv1d(xc[:, f0 : f0 + bands], wc, bc)
                if out is None:
                    out, won = h, torch.zeros(h.shape, dtype=torch.uint8, device=h.device)
                else:
                    # byte arithmetic: masked_fill and where with a bool mask run 10 to 40 times
                    # slower on the CPU. Offsets rise, so a new winner's offset is the largest.
                    better = torch.gt(h, out).view(torch.uint8)
                    torch.maximum(won, better.mul_(f0), out=won)
                    torch.maximum(out, h, out=out)
        ctx.save_for_backward(xc, wc, won)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xc, wc, won = ctx.saved_tensors
        x_dtype, w_dtype, _ = ctx.dtypes
        bands = wc.shape[1]
        grad = grad.to(wc.dtype)
        grad_x = torch.zeros_like(xc) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(wc, dtype=torch.promote_types(wc.dtype, torch.float32)) if ctx.needs_input_grad[1] else None
        g, mask, pick = torch.empty_like(grad), torch.empty_like(grad), torch.empty_like(won)
        for f0 in range(xc.shape[1] - bands + 1):
            # 1 where offset f0 won, 0 elsewhere: in bytes, then in grad's dtype (see forward)
            mask.copy_(torch.bitwise_xor(won, f0, out=pick).clamp_(max=1).neg_().add_(1))
            torch.mul(grad, mask, out=g)
            window = xc[:, f0 : f0 + bands]
            if grad_x is not None:
                grad_x[:, f0 : f0 + bands] += torch.nn.grad.conv1d_input(window.shape, wc, g)
            if grad_w is not None:
                grad_w += torch.nn.grad.conv1d_weight(window, wc.shape, g)
        return (
            None if grad_x is None else grad_x.to(x_dtype),
            None if grad_w is None else grad_w.to(w_dtype),
            bias_gradient(ctx, grad),
        )
