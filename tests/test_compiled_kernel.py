"""The compiled frequency-max kernel (frontends/compiled.py): the same maxima as the convolution
it replaces, built once per machine and never half-written, and a clear fallback where no
compiler works."""

from __future__ import annotations

import copy
import platform
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from elm_audio.frontends import base, compiled


def loaded(build, missing: str):
    """build()'s kernel, or the test skipped where this machine cannot have it."""
    fused = build()
    if fused is None:
        pytest.skip(missing)
    return fused


@pytest.fixture(scope="module")
def kernel() -> compiled.Kernel:
    return loaded(compiled.kernel, "no C++ compiler here")


def layer(frames: int, bands: int, filters: int, bias: bool = True, seed: int = 0) -> nn.Conv2d:
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(1, filters, (frames, bands), bias=bias).requires_grad_(False)
    nn.init.normal_(conv.weight, generator=gen)
    if bias:
        nn.init.normal_(conv.bias, generator=gen)
    return conv


def reference(spec: torch.Tensor, conv: nn.Conv2d, pad: int, relu: bool) -> torch.Tensor:
    """The layer as written: a float64 convolution of the padded spectrogram, then the maximum
    over every frequency offset (batch, filters, frames)."""
    h = conv.double()(F.pad(spec.double(), (0, 0, pad, pad)).unsqueeze(1)).amax(dim=3)
    conv.float()
    return F.relu(h) if relu else h


@pytest.mark.parametrize(
    "frames, bands, filters, bias, relu",
    [
        (1, 38, 512, True, True),  # timbral_temporal's 1 x 38: 59 offsets in blocks of 12
        (7, 86, 130, True, False),  # 11 offsets, one block; filters not a multiple of a block
        (3, 90, 64, False, True),  # 7 offsets
        (5, 20, 100, True, True),  # 77 offsets: blocks overlap where they do not divide
        (2, 96, 40, True, False),  # one offset
    ],
)
def test_kernel_maxima_are_the_convolutions_maxima(kernel, frames, bands, filters, bias, relu):
    conv = layer(frames, bands, filters, bias)
    spec = torch.randn(2, 37, 96, generator=torch.Generator().manual_seed(1))
    pad = (frames - 1) // 2
    padded = F.pad(spec, (0, 0, pad, pad))
    with torch.inference_mode():
        out = kernel.frequency_max(padded, conv.weight, conv.bias, relu, nans=False)
        checked = kernel.frequency_max(padded, conv.weight, conv.bias, relu, nans=True)
    expected = reference(spec, conv, pad, relu)
    assert out.shape == expected.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(out, checked)  # the NaN-keeping compare changes no finite maximum


def test_layers_take_the_kernel_where_it_pays_and_keep_their_values():
    """frequency_max_conv in float32 inference: many filters take the kernel (its values equal
    the library's forms to float32 rounding); a few filters, or one offset, keep the library's
    forms; bf16 and autograd never reach it."""
    if compiled.kernel() is None:
        pytest.skip("no C++ compiler here")
    spec = torch.randn(2, 40, 96, generator=torch.Generator().manual_seed(2))
    many, few = layer(3, 38, 4 * compiled.kernel().block_filters), layer(3, 38, 8)
    calls = []
    real = compiled.Kernel.frequency_max

    def counted(self, *args, **kwargs):
        calls.append(args[1].shape[0])
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, torch.inference_mode():
        mp.setattr(compiled.Kernel, "frequency_max", counted)
        fused = base.frequency_max_conv(spec, many, pad_time=1, relu=True)
        base.frequency_max_conv(spec, few, pad_time=1, relu=True)
        base.frequency_max_conv(spec.bfloat16(), copy.deepcopy(many).bfloat16(), pad_time=1, relu=True)
        mp.setattr(base, "KERNEL_OFFSETS", 10**6)
        library = base.frequency_max_conv(spec, many, pad_time=1, relu=True)
    assert calls == [many.out_channels]
    torch.testing.assert_close(fused, library, rtol=1e-5, atol=1e-5)


def test_a_nan_in_the_spectrogram_makes_its_windows_maxima_nan(kernel):
    """As torch.amax and F.relu keep a NaN, so does the kernel where cannot_overflow fails: every
    output frame whose windows hold it is NaN for every filter, the ReLU included; the other
    clip is untouched."""
    conv = layer(3, 38, 4 * kernel.block_filters)
    spec = torch.randn(2, 30, 96, generator=torch.Generator().manual_seed(3))
    spec[0, 12, 50] = float("nan")
    with torch.inference_mode():
        out = base.frequency_max_conv(spec, conv, pad_time=1, relu=True)
    assert bool(out[0, :, 11:14].isnan().all())
    assert not bool(out[0, :, :11].isnan().any()) and not bool(out[0, :, 14:].isnan().any())
    assert not bool(out[1].isnan().any())


def test_a_weight_changed_in_place_is_packed_again(kernel):
    """The kernel keeps each weight's packed copy; a weight or bias changed in place (a new seed
    through init_weights) gives the new layer's maxima, not the old."""
    conv = layer(1, 38, 2 * kernel.block_filters)
    spec = torch.randn(1, 20, 96, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        before = kernel.frequency_max(spec, conv.weight, conv.bias, False, False)
    with torch.no_grad():
        conv.weight.mul_(-2.0)
        conv.bias.add_(1.0)
    with torch.inference_mode():
        after = kernel.frequency_max(spec, conv.weight, conv.bias, False, False)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after.double(), reference(spec, conv, 0, False), rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 vector widths")
def test_the_eight_float_build_for_cpus_without_avx512_gives_the_same_maxima(tmp_path):
    """Built without AVX-512 (as on CPUs that have only AVX2), the kernel works in blocks of 16
    filters and 6 offsets (4 positions when pooling): the same maxima."""
    try:
        path = compiled.build(compiled.FLAGS + ("-mno-avx512f",), folder=tmp_path)
    except OSError:
        pytest.skip("no C++ compiler here")
    narrow = compiled.load(path)
    assert narrow.block_filters == 16
    conv = layer(7, 38, 50)
    spec = torch.randn(2, 25, 96, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        out = narrow.frequency_max(F.pad(spec, (0, 0, 3, 3)), conv.weight, conv.bias, True, False)
    torch.testing.assert_close(out.double(), reference(spec, conv, 3, True), rtol=1e-5, atol=1e-4)
    assert narrow.pool_rows == 4  # vgg's first block: 2 pooling windows at a time
    pooled = nn.Conv2d(1, 40, 3, padding=1).requires_grad_(False)
    with torch.inference_mode():
        rows = narrow.pooled_max(F.pad(spec, (1, 1, 1, 1)), pooled.weight, pooled.bias, (4, 2), False, torch.float32)
    expected = F.max_pool2d(pooled(spec.unsqueeze(1)), (4, 2)).permute(0, 2, 3, 1).reshape(rows.shape)
    torch.testing.assert_close(rows, expected, rtol=1e-5, atol=1e-5)


def test_a_build_is_made_once_per_machine_and_never_left_half_written(tmp_path, monkeypatch):
    """Builds racing into one cache folder each write a temporary file and rename it: one
    library, loadable, no temporary files left; a later build finds it and compiles nothing;
    another CPU (another -march=native) gets a build of its own."""
    if compiled.kernel() is None:
        pytest.skip("no C++ compiler here")
    paths, errors = [], []

    def one() -> None:
        try:
            paths.append(compiled.build(folder=tmp_path))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    racing = [threading.Thread(target=one) for _ in range(2)]
    for t in racing:
        t.start()
    for t in racing:
        t.join()
    assert not errors and len(set(paths)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]
    assert compiled.load(paths[0]).block_filters == compiled.kernel().block_filters
    stamp = paths[0].stat().st_mtime_ns
    assert compiled.build(folder=tmp_path) == paths[0] and paths[0].stat().st_mtime_ns == stamp
    monkeypatch.setattr(compiled, "cpu_identity", lambda: "another CPU")
    assert compiled.build(folder=tmp_path) != paths[0]


def test_without_a_compiler_the_layers_keep_the_librarys_forms_and_say_why(tmp_path, monkeypatch):
    """No compiler (CXX names none) or one that fails: kernel() warns once, naming the cause and
    what to do, and frequency_max_conv computes the same maxima the slower way."""
    broken = tmp_path / "broken-c++"
    broken.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo broken 1.0; exit 0; }\necho 'error: no such target' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    conv = layer(3, 38, 256)
    spec = torch.randn(1, 20, 96, generator=torch.Generator().manual_seed(6))
    try:
        for cxx, why in ((str(tmp_path / "missing-c++"), "apt install g++"), (str(broken), "error: no such target")):
            monkeypatch.setenv("CXX", cxx)
            compiled.kernel.cache_clear()
            with pytest.warns(RuntimeWarning, match="could not be built") as caught:
                assert compiled.kernel() is None
            assert why in str(caught[0].message)
            with torch.inference_mode():
                out = base.frequency_max_conv(spec, conv, pad_time=1, relu=True)
            torch.testing.assert_close(out.double(), reference(spec, conv, 1, True), rtol=1e-5, atol=1e-4)
        assert not any((tmp_path / "cache").rglob("*.so"))
    finally:
        compiled.kernel.cache_clear()


def test_a_training_step_through_the_kernel_has_the_layers_gradients(kernel):
    """Under autograd in float32 (weights=trained), WindowMax's forward takes the kernel's maxima
    and the offsets that won them: the output and the gradients of the spectrogram, the filters
    and the bias are those of the convolution and max written out in float64."""
    conv = layer(3, 38, 4 * kernel.block_filters).requires_grad_(True)
    spec = torch.randn(2, 24, 96, generator=torch.Generator().manual_seed(7), requires_grad=True)
    out = base.frequency_max_conv(spec, conv, pad_time=1, relu=True)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(8))
    grads = torch.autograd.grad(out, (spec, conv.weight, conv.bias), g)
    plain = layer(3, 38, 4 * kernel.block_filters).double().requires_grad_(True)
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        plain.bias.copy_(conv.bias)
    spec64 = spec.detach().double().requires_grad_(True)
    expected = F.relu(plain(F.pad(spec64, (0, 0, 1, 1)).unsqueeze(1)).amax(dim=3))
    wanted = torch.autograd.grad(expected, (spec64, plain.weight, plain.bias), g.double())
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-4)
    for ours, theirs in zip(grads, wanted):
        torch.testing.assert_close(ours.double(), theirs, rtol=1e-5, atol=1e-4)


def test_one_frame_filters_train_in_float32_under_bf16_autocast_and_say_so(kernel, caplog):
    """Where the kernel beats bf16 (1-frame filters, many offsets: the float32 forward and the
    winning windows' gradient), a bf16-autocast training step keeps that layer in float32, logs
    it, and its output and filters' gradient are float32's, not bf16's rounding."""
    conv = layer(1, 38, 4 * kernel.block_filters).requires_grad_(True)
    spec = torch.randn(2, 24, 96, generator=torch.Generator().manual_seed(9))
    with caplog.at_level("INFO", logger="elm_audio.frontends.base"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = base.frequency_max_conv(spec, conv, relu=True)
        (grad,) = torch.autograd.grad(out.sum(), conv.weight)
    assert out.dtype == torch.float32 and f"{4 * kernel.block_filters} filters of 1x38" in caplog.text and "float32" in caplog.text
    plain = layer(1, 38, 4 * kernel.block_filters).double().requires_grad_(True)
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        plain.bias.copy_(conv.bias)
    expected = F.relu(plain(spec.double().unsqueeze(1)).amax(dim=3))
    (wanted,) = torch.autograd.grad(expected.sum(), plain.weight)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad.double(), wanted, rtol=1e-5, atol=1e-4)


@pytest.fixture(scope="module")
def amx() -> compiled.AmxKernel:
    return loaded(compiled.amx_kernel, "no AMX here (or no compiler)")


@pytest.mark.parametrize(
    "frames, bands, filters, relu",
    [(1, 38, 512, True), (7, 86, 130, False), (3, 38, 96, True), (2, 90, 33, True), (5, 20, 64, False)],
)
def test_amx_maxima_are_the_convolutions_maxima_in_bf16(amx, frames, bands, filters, relu):
    """The bf16 kernel on the matrix units (tiles of up to 16 offsets and 16 filters; bands
    padded to 32 with zero filters; offsets in overlapping blocks; an odd number of positions
    per thread; filters not a multiple of 32, stored under a mask): the float64 layer's maxima
    of the same bf16 inputs, to the rounding of one bf16 output."""
    conv = layer(frames, bands, filters, seed=frames)
    spec = torch.randn(3, 29, 96, generator=torch.Generator().manual_seed(10)).bfloat16()
    pad = (frames - 1) // 2
    weight, bias = conv.weight.bfloat16(), conv.bias.bfloat16()
    with torch.inference_mode():
        out = amx.frequency_max(spec, pad, weight, bias, relu)
    exact = nn.Conv2d(1, filters, (frames, bands)).double().requires_grad_(False)
    exact.weight.copy_(weight.double())
    exact.bias.copy_(bias.double())
    expected = reference(spec, exact, pad, relu)
    assert out.shape == expected.shape and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)


def test_bf16_layers_take_the_amx_kernel_only_where_every_value_is_finite(amx):
    """In bf16 inference frequency_max_conv takes the matrix units where cannot_overflow holds
    (a tile reads past a window's bands, where zero filters meet the next values); a NaN in the
    spectrogram sends the layer to the library's forms, which keep it."""
    conv = layer(3, 38, 128).bfloat16()
    spec = torch.randn(2, 30, 96, generator=torch.Generator().manual_seed(11)).bfloat16()
    calls = []
    real = compiled.AmxKernel.frequency_max

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, torch.inference_mode():
        mp.setattr(compiled.AmxKernel, "frequency_max", counted)
        fused = base.frequency_max_conv(spec, conv, pad_time=1, relu=True)
        mp.setattr(base, "KERNEL_OFFSETS", 10**6)
        library = base.frequency_max_conv(spec, conv, pad_time=1, relu=True)
        mp.setattr(base, "KERNEL_OFFSETS", 2)
        spec[0, 12, 50] = float("nan")
        kept = base.frequency_max_conv(spec, conv, pad_time=1, relu=True)
    assert calls == [1]
    torch.testing.assert_close(fused.float(), library.float(), rtol=2e-2, atol=2e-2)
    assert bool(kept[0, :, 11:14].isnan().all()) and not bool(kept[1].isnan().any())


def test_without_torchs_openmp_pool_a_pool_of_its_own_computes_the_same(kernel, monkeypatch):
    """The kernels run their shares in one parallel region of torch's OpenMP pool; where torch
    has none to reach, threads of their own take the shares: the same maxima, every share done."""
    conv = layer(3, 38, 4 * kernel.block_filters)
    spec = torch.randn(3, 31, 96, generator=torch.Generator().manual_seed(12))
    with torch.inference_mode():
        in_region = kernel.frequency_max(spec, conv.weight, conv.bias, True, False)
        monkeypatch.setattr(compiled, "openmp_runtime", lambda: None)
        monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # more shares than cores: each thread takes several
        pooled = kernel.frequency_max(spec, conv.weight, conv.bias, True, False)
    assert torch.equal(in_region, pooled)


@pytest.mark.parametrize("filters, dtype, mels", [(130, torch.float32, 96), (64, torch.bfloat16, 90)])
def test_pooled_maxima_are_the_convolution_max_pooled(kernel, filters, dtype, mels):
    """pooled_max (vgg's first block): the 3x3 'same' convolution of one channel, max-pooled over
    4 x 2 windows as it is computed, plus bias, equals conv2d then max_pool2d; filters not a
    multiple of a block, pooled columns (45) not a multiple of a group (the last overlaps),
    bf16 rounded once from float32 sums."""
    conv = nn.Conv2d(1, filters, 3, padding=1).requires_grad_(False)
    nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(13))
    spec = torch.randn(2, 40, mels, generator=torch.Generator().manual_seed(14)).to(dtype)
    with torch.inference_mode():
        rows = kernel.pooled_max(F.pad(spec, (1, 1, 1, 1)), conv.weight, conv.bias, (4, 2), False, dtype)
        checked = kernel.pooled_max(F.pad(spec, (1, 1, 1, 1)), conv.weight, conv.bias, (4, 2), True, dtype)
    expected = F.max_pool2d(conv.double()(spec.double().unsqueeze(1)), (4, 2))  # (2, filters, 10, mels / 2)
    assert rows.dtype == dtype and rows.shape == (2 * 10 * (mels // 2), filters)
    got = rows.view(2, 10, mels // 2, filters).permute(0, 3, 1, 2).double()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(got, expected, **tol)
    assert torch.equal(rows, checked)


def test_vgg_first_block_through_the_kernel_keeps_its_values_and_a_nan(kernel):
    """vgg's first block in inference takes pooled_max where it has 4 blocks of filters: the
    same pooled map as the products form, channels-last; a NaN in the spectrogram makes the
    outputs of its pooling window NaN (the NaN-keeping compare), as max_pool2d does."""
    from elm_audio.frontends import vgg

    front = vgg.VGG(4 * kernel.block_filters).eval()
    spec = torch.randn(1, 1, 48, 96, generator=torch.Generator().manual_seed(15))
    conv = front.convs[0]
    with torch.inference_mode():
        fused = front.first_block(spec)
        products, _ = vgg.pooled_products(spec, conv.weight, conv.bias, winners=False)
        spec[0, 0, 21, 50] = float("nan")
        kept = front.first_block(spec)
    assert fused.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fused, products.view(1, 12, 48, -1).permute(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    assert bool(kept[0, :, 5, 25].isnan().all()) and int(kept.isnan().sum()) == 4 * kernel.block_filters * 2


def test_a_bf16_training_step_takes_the_amx_maxima_and_winners(amx):
    """Under bf16 autocast, WindowMax's forward takes the matrix units' maxima and the offsets
    that won them (3x38 filters, many per window value): its output and the filters' gradient
    are the float64 layer's, to bf16's rounding."""
    conv = layer(3, 38, 256).requires_grad_(True)
    spec = torch.randn(2, 24, 96, generator=torch.Generator().manual_seed(16))
    calls = []
    real = compiled.AmxKernel.maxima_and_winners

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compiled.AmxKernel, "maxima_and_winners", counted)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = base.frequency_max_conv(spec, conv, pad_time=1, relu=True)
        (grad,) = torch.autograd.grad(out.float().sum(), conv.weight)
    assert calls == [1] and out.dtype == torch.bfloat16
    plain = layer(3, 38, 256).double().requires_grad_(True)
    with torch.no_grad():
        plain.weight.copy_(conv.weight.bfloat16().double())
        plain.bias.copy_(conv.bias.bfloat16().double())
    expected = F.relu(plain(F.pad(spec.bfloat16().double(), (0, 0, 1, 1)).unsqueeze(1)).amax(dim=3))
    (wanted,) = torch.autograd.grad(expected.sum(), plain.weight)
    torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(grad.double(), wanted, rtol=2e-2, atol=0.5)
