"""Front-ends against docs/method.md's table: structure, weights, and per-clip features."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.audio import clips
from helpers.frontends import LENGTHS, frontend
from torch import nn

from elm_audio.config import native_frontends
from elm_audio.frontends.profile import profile

# docs/method.md, "Front-ends": n small / large, and the feature counts per tapped layer as a
# function of n (r = n / 4).
SPEC = {
    "sample_level": ((23, 512), lambda n: [n] * 7),
    "frame_level": ((40, 896), lambda n: [n] * 4),
    "frame_level_many": ((20, 448), lambda n: [n] * 8),
    "vgg": ((32, 717), lambda n: [n] * 5),
    "cnn_7x96": ((160, 3585), lambda n: [n]),
    "cnn_7x86": ((160, 3585), lambda n: [n]),
    "timbral": ((8, 256), lambda n: [n, 2 * n, 4 * n, n, 2 * n, 4 * n]),
    "temporal": ((8, 256), lambda n: [n - n // 4, 2 * n - n // 4, 4 * n - n // 4, 8 * n - n // 4]),
    "timbral_temporal": (
        (4, 128),
        lambda n: [n, 2 * n, 4 * n, n, 2 * n, 4 * n, n - n // 4, 2 * n - n // 4, 4 * n - n // 4, 8 * n - n // 4],
    ),
    "timbral_time": (
        (4, 128),
        lambda n: [n, 2 * n, 4 * n, n, 2 * n, 4 * n, n - n // 4, 2 * n - n // 4, 4 * n - n // 4, 8 * n - n // 4],
    ),
}
# Filter shapes (time x frequency, or length / stride) the paper names.
KERNELS = {
    "sample_level": {((3,), (3,))} | {((3,), (1,))},
    "frame_level": {((512,), (32,)), ((7,), (1,))},
    "frame_level_many": {((k,), (32,)) for k in (512, 256, 128, 64, 32)} | {((7,), (1,))},
    "vgg": {((3, 3), (1, 1))},
    "cnn_7x96": {((7, 96), (1, 1))},
    "cnn_7x86": {((7, 86), (1, 1))},
    "timbral": {((t, f), (1, 1)) for t in (7, 3, 1) for f in (86, 38)},
    "temporal": {((k,), (1,)) for k in (165, 128, 64, 32)},
    "timbral_temporal": {((t, f), (1, 1)) for t in (7, 3, 1) for f in (86, 38)}
    | {((k,), (1,)) for k in (165, 128, 64, 32)},
    "timbral_time": {((t, f), (1, 1)) for t in (7, 3, 1) for f in (86, 38)} | {((k,), (1,)) for k in (64, 32, 16, 8)},
}
SIZES = ("small", "large")


def test_every_front_end_of_the_spec_has_a_config():
    assert set(native_frontends()) == set(LENGTHS)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", sorted(LENGTHS))
def test_feature_length_and_layer_breakdown_follow_the_spec(name, size):
    info = profile(frontend(name, size))
    assert info["feature_dim"] == LENGTHS[name][SIZES.index(size)]
    assert sum(layer["n_features"] for layer in info["layers"]) == info["feature_dim"]
    if name in SPEC:
        widths, per_layer = SPEC[name]
        assert [layer["n_features"] for layer in info["layers"]] == per_layer(widths[SIZES.index(size)])
        assert info["input"] == ("waveform" if name.startswith(("sample", "frame")) else "spectrogram")
    assert info["input_shape"] == ([350_000] if info["input"] == "waveform" else [1376, 96])


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_filter_shapes_and_strides_are_the_papers(name):
    convs = [m for m in frontend(name).modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert {(tuple(m.kernel_size), tuple(m.stride)) for m in convs} == KERNELS[name]
    assert all(m.padding in ((0,), (0, 0), (1,), (1, 1), (3,)) for m in convs)


def test_layer_shapes_match_the_architectures():
    layers = {l["name"]: l["shape"] for l in profile(frontend("vgg"))["layers"]}
    # pools (4,2) (4,3) (5,2) (4,2) (4,4) take 1,376 x 96 down to 1 x 1
    assert [layers[f"pool{i}"][1:] for i in range(1, 6)] == [[344, 48], [86, 16], [17, 8], [4, 4], [1, 1]]
    sample = profile(frontend("sample_level"))["layers"]
    assert [l["shape"][1] for l in sample] == [116_666, 38_888, 12_962, 4_320, 1_440, 480, 160]
    frame = profile(frontend("frame_level"))["layers"]
    assert [l["shape"][1] for l in frame] == [10_922, 10_916, 10_916, 5_458]
    many = profile(frontend("frame_level_many"))["layers"]
    assert [l["shape"][1] for l in many][:5] == [10_938] * 5  # 'same': ceil(350,000 / 32)
    assert profile(frontend("cnn_7x86"))["layers"][0]["shape"] == [160, 1370, 1]  # after the 1 x 11 pool
    timbral = profile(frontend("timbral"))["layers"]
    assert all(l["shape"][1] == 1376 for l in timbral)  # time padded to keep the length


def test_mfcc_has_one_size_whatever_feature_size_says():
    assert profile(frontend("mfcc", "small"))["feature_dim"] == profile(frontend("mfcc", "large"))["feature_dim"] == 120


def test_flops_count_multiply_adds_twice():
    # cnn_7x96 small: one conv, 160 filters of 7 x 96 at 1,370 positions
    assert profile(frontend("cnn_7x96"))["gflops_per_clip"] == pytest.approx(2 * 160 * 7 * 96 * 1370 / 1e9)
    assert profile(frontend("cnn_7x96"))["n_params"] == 160 * 7 * 96 + 160


@pytest.mark.parametrize("name, size", [*((n, "small") for n in sorted(LENGTHS)), ("vgg", "large"), ("timbral_temporal", "large")])
def test_the_flop_count_is_torchs_flop_counter_on_the_meta_device(name, size):
    """profile counts on an empty batch what torch's own counter counts on the meta device
    (where vgg's first block is its convolution, not the faster product)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    front = frontend(name, size)
    meta = copy.deepcopy(front).to("meta")
    with FlopCounterMode(display=False) as counter:
        layers = meta.trace(torch.zeros((1, *meta.input_shape), device="meta"))
    profiled = profile(front)
    assert profiled["gflops_per_clip"] == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-12)
    assert profiled["layers"] == [{"name": l.name, "shape": list(l.shape), "n_features": l.n_features} for l in layers]


def test_weights_are_truncated_normal_with_tf1_he_scaling_and_zero_biases():
    model = frontend("vgg", "large")
    conv = model.convs[2]
    w = conv.weight.detach().numpy().ravel()
    std = math.sqrt(1.3 * 2 / (717 * 9))
    assert np.abs(w).max() <= 2 * std + 1e-7
    # a normal truncated at two standard deviations keeps 0.8796 of its standard deviation
    assert w.std() == pytest.approx(0.8796 * std, rel=0.01)
    assert abs(w.mean()) < 0.01 * std
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in model.convs)


@pytest.mark.parametrize("name", sorted(LENGTHS))
def test_a_clips_features_do_not_depend_on_its_batch(name):
    front = frontend(name).eval()
    x = clips(front, 4)
    with torch.inference_mode():
        together = front(x)
        alone = torch.cat([front(x[i : i + 1]) for i in range(4)])
        reordered = front(x[[2, 0, 3, 1]])
        other_company = front(torch.cat([x[:1], clips(front, 2, seed=9)]))
    assert together.shape == (4, LENGTHS[name][0])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reordered, together[[2, 0, 3, 1]], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(other_company[0], together[0], rtol=1e-4, atol=1e-5)


SEED_SCRIPT = """
import json, sys, torch, math
sys.path.insert(0, {tests!r})
from helpers.audio import clips
from helpers.frontends import frontend
out = {{}}
for name in {names!r}:
    front = frontend(name, seed=7).eval()
    with torch.inference_mode():
        out[name] = front(clips(front, 1)).tolist()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_the_same_seed_gives_the_same_features_in_another_process_and_another_seed_does_not():
    names = sorted(SPEC)
    script = SEED_SCRIPT.format(tests=str(__import__("pathlib").Path(__file__).parent), names=names)
    other = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    for name in names:
        here = frontend(name, seed=7).eval()
        different = frontend(name, seed=8).eval()
        with torch.inference_mode():
            mine = here(clips(here, 1))
            theirs = different(clips(here, 1))
        torch.testing.assert_close(mine, torch.tensor(other[name]), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(mine, theirs, rtol=1e-2), name


@pytest.mark.slow
def test_large_sample_level_runs_one_clip_at_batch_size_one():
    """The heaviest first layers (512 maps of 116,666 samples); benchmarks/memory.py measures
    the peak memory of every large front-end."""
    front = frontend("sample_level", "large").eval()
    with torch.inference_mode():
        out = front(clips(front, 1))
    assert out.shape == (1, 3584) and torch.isfinite(out).all()


def plain_reference(front, spec: torch.Tensor) -> torch.Tensor:
    """The front-ends written directly from docs/method.md with plain convolutions and
    max-pools, against which the faster formulations are checked."""

    from elm_audio.frontends.vgg import POOLS

    x = spec.unsqueeze(1)
    name = type(front).__name__
    if name == "SampleLevel":
        h = F.relu(front.stem(x))
        means = [h.mean(-1)]
        for conv in front.convs:
            h = F.max_pool1d(F.relu(conv(h)), 3)
            means.append(h.mean(-1))
        return torch.cat(means, 1)
    if name == "VGG":
        means, h = [], x
        for conv, pool in zip(front.convs, POOLS):
            h = F.max_pool2d(F.elu(conv(h)), pool)
            means.append(h.mean(dim=(2, 3)))
        return torch.cat(means, 1)
    if name == "SingleLayer":
        h = F.relu(front.conv(x))
        return F.max_pool2d(h, (1, h.shape[-1])).mean(dim=(2, 3))
    means = []
    for conv in front.timbral:
        half = (conv.kernel_size[0] - 1) // 2
        h = F.relu(F.conv2d(F.pad(x, (0, 0, half, half)), conv.weight, conv.bias))
        means.append(F.max_pool2d(h, (1, h.shape[-1])).mean(dim=(2, 3)))
    return torch.cat(means, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("grad", [False, True])
def test_fused_relu_layers_are_the_layer_then_relu(dtype, grad):
    """frontends.fused: oneDNN's ReLU post-op gives relu(linear) and relu(conv2d) on
    channels-last maps, as computed apart (the same kernels: equal to rounding); under
    autograd the plain ops, whose gradients flow."""
    from elm_audio.frontends.fused import relu_conv2d, relu_linear

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 300, 3, generator=gen).to(dtype)
    w, b = torch.randn(64, 3, generator=gen).to(dtype), torch.randn(64, generator=gen).to(dtype)
    image = torch.randn(2, 64, 1, 200, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    kernel = (0.1 * torch.randn(32, 64, 1, 3, generator=gen)).to(dtype)
    if grad:
        w.requires_grad_()
        kernel.requires_grad_()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    with torch.set_grad_enabled(grad):
        out = relu_linear(x, w, b, in_range=True)
        torch.testing.assert_close(out, F.relu(F.linear(x, w, b)), **tol)
        conv = relu_conv2d(image, kernel, b[:32], padding=(0, 1), in_range=True)
        torch.testing.assert_close(conv, F.relu(F.conv2d(image, kernel, b[:32], padding=(0, 1))), **tol)
    assert bool((out >= 0).all()) and bool((out == 0).any()) and bool((conv == 0).any())
    if grad:
        (out.sum() + conv.sum()).backward()
        assert w.grad is not None and kernel.grad is not None


def test_layers_fuse_their_relu_only_where_no_sum_can_overflow():
    """oneDNN's fused ReLU turns NaN into 0 (an overflowed sum's inf - inf), which F.relu keeps:
    cannot_overflow bounds every sum of a chain by its weights' row sums and the input's
    largest magnitude, and where a sum could overflow, or the input is not finite, the layer
    is the plain op, whose NaN reaches the features (extraction then reports them)."""
    from elm_audio.frontends.fused import cannot_overflow, relu_linear

    w = torch.tensor([[1.0, -1.0, 1.0], [2.0, 2.0, 2.0]])  # row sums of |w|: 3 and 6
    chain = [(w, torch.tensor([0.5, -4.0])), (torch.full((2, 2), 0.5), None)]  # then 1
    finfo = torch.finfo(torch.float32)
    assert cannot_overflow(torch.tensor([1.0, -2.0]), chain)  # bound (6 * 2 + 4) * 1 = 16
    assert cannot_overflow(torch.tensor([finfo.max / 16]), chain)  # the bound: 6e37 + 4, under half the range
    assert not cannot_overflow(torch.tensor([finfo.max / 8]), chain)
    assert not cannot_overflow(torch.tensor([1.0, float("nan")]), chain)
    assert not cannot_overflow(torch.tensor([float("inf")]), chain)
    x = torch.tensor([[3e38, -3e38, 3e38]])  # its sums overflow: 3e38 - 3e38 + 3e38 = inf - inf somewhere
    with torch.inference_mode():
        in_range = cannot_overflow(x, [(w, None)])
        out = relu_linear(x, w, None, in_range)
    assert not in_range
    torch.testing.assert_close(out, F.relu(F.linear(x, w)), equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_relu_maxima_are_the_maxima_of_the_values(dtype):
    """fused.relu_amax on a ReLU's outputs (0.0 and the -0.0 a fused ReLU writes for a negative
    sum, ties, +inf, values of every magnitude) along each dimension, returned or written into
    a strided slice: torch.amax's maxima, bit for bit but the sign of a zero."""
    from elm_audio.frontends.fused import relu_amax

    gen = torch.Generator().manual_seed(0)
    scales = 10.0 ** torch.randint(-30, 30, (6, 9, 11), generator=gen)
    values = (torch.randn(6, 9, 11, generator=gen, dtype=torch.float64) * scales).to(dtype).clamp_min(0.0)
    values[values == 0] = -0.0 if dtype != torch.float64 else 0.0
    values[0, :, 0] = -0.0  # a column of zeros written as -0.0
    values[1, :, 1] = 0.0
    values[1, :4, 1] = -0.0  # -0.0 and 0.0 together
    values[2, 3:5, 2] = values[2, :, 2].max()  # a tie
    values[3, 5, 3] = float("inf")
    for dim in range(3):
        expected = torch.amax(values, dim)
        got = relu_amax(values, dim)
        assert got.dtype == dtype and torch.equal(got, expected)
    out = torch.full((6, 22), float("nan"), dtype=dtype)
    written = relu_amax(values, 1, out=out[:, ::2])
    assert written.data_ptr() == out.data_ptr() and torch.equal(out[:, ::2], torch.amax(values, 1))
    assert bool(out[:, 1::2].isnan().all())  # the slice's gaps untouched


@pytest.mark.parametrize("positions", [0, 7, 100_003])
def test_bf16_map_means_are_float32_sums_over_every_position(positions, monkeypatch):
    """FrontEnd.tap's means of bf16 maps, summed a slice of positions at a time (here small
    slices, so that a map has many and a remainder): the float64 mean to float32 rounding; an
    empty map's mean is NaN, as torch's mean says."""
    from elm_audio.frontends import base

    monkeypatch.setattr(base, "MEAN_SLICE_VALUES", 1 << 10)
    flat = torch.rand(2, 24, positions, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    means = base.map_means(flat.transpose(1, 2).contiguous().transpose(1, 2))  # channels-last, as sample_level's
    assert means.dtype == torch.float32 and means.shape == (2, 24)
    if not positions:
        assert bool(means.isnan().all())
        return
    exact = flat.double().mean(dim=-1)
    assert float((means.double() - exact).abs().max()) <= 1e-6 * float(exact.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vggs_max_pool_is_max_pool2d_on_either_layout(dtype):
    """vgg.max_pool on channels-first maps (an amax over a reshaped view) and on channels-last
    ones (what oneDNN returns in bf16), sizes the pools do not divide included (the floor of
    max_pool2d): max_pool2d's values, in the layout it was given."""
    from elm_audio.frontends.vgg import max_pool

    h = torch.randn(2, 24, 17, 11, generator=torch.Generator().manual_seed(0)).to(dtype)
    expected = F.max_pool2d(h.float(), (5, 2)).to(dtype)
    with torch.inference_mode():
        for layout in (torch.contiguous_format, torch.channels_last):
            pooled = max_pool(h.contiguous(memory_format=layout), (5, 2))
            assert torch.equal(pooled, expected)
            assert pooled.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("name", ["vgg", "cnn_7x96", "cnn_7x86", "timbral", "sample_level"])
def test_fast_formulations_equal_the_plain_layers(name):
    front = frontend(name).eval()
    with torch.inference_mode():
        spec = front.prepare(clips(front, 2))
        torch.testing.assert_close(front.features(spec), plain_reference(front, spec), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("frames, bias", [(3, True), (7, False)])
def test_many_offset_filters_are_one_convolution_with_frames_as_channels(dtype, frames, bias, monkeypatch):
    """frame_channels_max, the inference form of filters taller than a frame over 38 of 96
    bands (59 offsets), in chunks of a few frames (here small ones, with a remainder): the
    one-channel convolution's map maximized over the offsets, as max_pool2d gives it (float64:
    to rounding; bf16, maximized by max_pool2d: to bf16's rounding of the float64 map)."""
    from elm_audio.frontends import base

    monkeypatch.setattr(base, "WINDOW_BYTES", 40_000)
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(1, 24, (frames, 38), bias=bias).double().requires_grad_(False)
    if bias:
        nn.init.normal_(conv.bias, generator=gen)
    spec = torch.randn(2, 101, 96, generator=gen, dtype=torch.float64)
    half = (frames - 1) // 2
    h = conv(F.pad(spec, (0, 0, half, half)).unsqueeze(1))  # (2, 24, 101, 59)
    expected = F.max_pool2d(h, (1, 59))[..., 0]
    layer = conv.to(dtype)
    with torch.inference_mode():
        pooled = base.frequency_max_conv(spec.to(dtype), layer, pad_time=half)
    assert pooled.shape == expected.shape and pooled.dtype == dtype
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-2, "atol": 5e-2}
    torch.testing.assert_close(pooled.double(), expected, **tol)


@pytest.mark.parametrize("frames, bands", [(1, 38), (7, 86), (3, 38)])
def test_bf16_frequency_max_layers_fuse_the_relu_and_bias_but_keep_a_nan(frames, bands):
    """frequency_max_conv(relu=True) in bf16, on window products (1-frame filters; many filters
    per window value) and on frame_channels_max's convolution (3 x 38: 59 offsets): ReLU and
    bias applied as oneDNN writes the products, maximized by relu_amax, equal the ReLU of the
    maxima plus the bias, to bf16's rounding; a NaN in the spectrogram, where the fused ReLU
    would give 0, still makes its frame's outputs NaN (the layer is then the plain product)."""
    from elm_audio.frontends import base

    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(1, 640 if frames > 1 else 64, (frames, bands)).requires_grad_(False)
    nn.init.normal_(conv.bias, generator=gen)
    conv = conv.to(torch.bfloat16)
    spec = torch.randn(2, 50, 96, generator=gen).to(torch.bfloat16)
    with torch.inference_mode():
        fused = base.frequency_max_conv(spec, conv, relu=True)
        plain = F.relu(base.frequency_max_conv(spec, conv))
        assert bool((fused == 0).any()) and bool((fused >= 0).all())
        torch.testing.assert_close(fused.float(), plain.float(), rtol=2e-2, atol=2e-2)
        spec[0, 20, 50] = float("nan")
        out = base.frequency_max_conv(spec, conv, relu=True)
    assert bool(out[0, :, 21 - frames : 21].isnan().all()) and not bool(out[1].isnan().any())  # every window holding it


def test_bf16_copies_hold_spectrogram_filters_in_the_window_products_layout():
    """precision.in_dtype's bf16 copy keeps one-input-channel filters in (frames, bands, filters)
    memory, so products.product_weight's layout for the window products is a view of it, not a
    copy made at every batch; the filters' values are the float32 ones rounded."""
    from elm_audio.extraction.precision import in_dtype
    from elm_audio.products import product_weight

    front = frontend("cnn_7x86")
    copy = in_dtype(front, torch.bfloat16)
    weight = copy.conv.weight
    kernel = product_weight(weight[:, 0].reshape(weight.shape[0], -1))
    assert kernel.data_ptr() == weight.data_ptr() and kernel.t().is_contiguous()
    assert torch.equal(weight, front.conv.weight.to(torch.bfloat16))
