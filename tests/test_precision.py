"""precision=bf16 on the CPU: bf16 weights ahead of time give features close to float32's; a
CPU where bf16 would not beat float32 computes in float32, says so and shares float32's cached
features; the training formulation of the
frequency max-pool has the plain max-pool's gradient."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.audio import clips, tone, write_audio
from helpers.frontends import frontend

from elm_audio.config import compose, native_frontends
from elm_audio.datasets import Clip
from elm_audio.extraction import precision
from elm_audio.extraction.extract import ExtractSettings, extract
from elm_audio.frontends import base
from elm_audio.frontends.base import BANDED_COLUMNS, frequency_max_conv
from elm_audio.frontends.profile import profile
from elm_audio.frontends.vgg import POOLS
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, a number: measured outside autograd (a or b may be part of a graph)."""
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", ["vgg", "cnn_7x86", "timbral_temporal", "sample_level", "frame_level"])
def test_bf16_features_are_float32_features_within_bf16_rounding(name):
    front = frontend(name).eval()
    network = precision.in_dtype(front, torch.bfloat16)
    assert front.prepare(torch.zeros(1, 4)).dtype != torch.bfloat16  # the original keeps its precision
    with torch.inference_mode():
        spec = front.prepare(clips(front, 1))
        full = front.features(spec)
        half = network.features(spec.to(torch.bfloat16))
    assert half.dtype == torch.float32 and half.shape == full.shape
    # bf16 keeps 8 bits of mantissa (0.4% a rounding); the features are means of many products
    assert relative_difference(half, full) < 0.02
    assert all(p.dtype == torch.float32 for p in front.parameters())


@pytest.mark.parametrize("name", native_frontends())
def test_every_front_end_computes_under_bf16_autocast_without_gradients(name):
    """weights=trained with precision=bf16 scores its validation and test clips under autocast
    without gradients: the faster inference forms (vgg's first block as a product, the 1-frame
    filters) then receive bf16 products."""
    front = frontend(name).eval()
    with torch.no_grad():
        spec = front.prepare(clips(front, 1))
        full = front.features(spec)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = front.features(spec).float()
    assert half.shape == full.shape
    assert relative_difference(half, full) < 0.02


@pytest.fixture()
def wav_clips(tmp_path):
    out = []
    for i in range(2):
        path = tmp_path / f"clip{i}.wav"
        write_audio(path, tone(220.0 * (i + 1), 0.5, 16_000, seed=i), 16_000)
        out.append(Clip(f"clip{i}", str(path), "x"))
    return out


def extracted(front, wav_clips, precision_name: str) -> np.ndarray:
    out = np.zeros((len(wav_clips), profile(front)["feature_dim"]), np.float32)
    computes = precision.effective_precision(torch.device("cpu"), precision_name)  # as settings.load resolves it
    settings = ExtractSettings(batch_size=2, num_workers=0, progress=False, precision=computes)
    extract(front, wav_clips, out, torch.device("cpu"), settings)
    return out


NO_UNITS = {"flags": "fpu avx2 avx512f", "vendor_id": "GenuineIntel"}
AMX = {"flags": "avx512f avx512_bf16 amx_bf16 amx_tile", "vendor_id": "GenuineIntel"}


def test_without_bf16_units_bf16_computes_in_float32_and_says_so_once(wav_clips, monkeypatch, capsys):
    front = frontend("temporal")
    full = extracted(front, wav_clips, "fp32")
    monkeypatch.setattr(precision, "_first_cpu", lambda: NO_UNITS)
    monkeypatch.setattr(precision, "_said", set())
    capsys.readouterr()
    fallback = extracted(front, wav_clips, "bf16")
    again = extracted(front, wav_clips, "bf16")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no bf16 units" in lines[0] and "fp32" in lines[0]
    np.testing.assert_array_equal(fallback, full)
    np.testing.assert_array_equal(again, full)


def test_with_bf16_units_bf16_extraction_computes_in_bf16(wav_clips, monkeypatch, capsys):
    front = frontend("temporal")
    full = extracted(front, wav_clips, "fp32")
    monkeypatch.setattr(precision, "_first_cpu", lambda: AMX)
    half = extracted(front, wav_clips, "bf16")
    assert "computing in fp32" not in capsys.readouterr().err
    assert not np.array_equal(half, full)
    assert np.linalg.norm(half - full) / np.linalg.norm(full) < 0.02


@pytest.mark.parametrize(
    "flags,vendor,device,computes,why",
    [
        ("avx2 avx512f", "AuthenticAMD", "cpu", "fp32", "no bf16 units"),
        ("avx512f avx512_bf16", "GenuineIntel", "cpu", "fp32", "no AMX"),  # Cooper Lake, or AMX hidden
        ("avx512f avx512_bf16 amx_bf16", "GenuineIntel", "cpu", "bf16", None),
        ("avx512f avx512_bf16", "AuthenticAMD", "cpu", "bf16", None),  # Zen 4 and 5
        ("avx2", "GenuineIntel", "cuda", "bf16", None),  # the GPU computes it
    ],
)
def test_bf16_computes_in_bf16_only_where_it_beats_float32(flags, vendor, device, computes, why, monkeypatch, capsys):
    monkeypatch.setattr(precision, "_first_cpu", lambda: {"flags": flags, "vendor_id": vendor})
    monkeypatch.setattr(precision, "_said", set())
    assert precision.effective_precision(torch.device(device), "bf16") == computes
    assert precision.effective_precision(torch.device(device), "fp32") == "fp32"
    err = capsys.readouterr().err
    assert (why in err and "computing in fp32" in err) if why else not err


def test_the_cpu_is_read_from_the_first_processor_in_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_bf16\n\n"
        "processor\t: 1\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n"
    )
    first = precision._first_cpu(str(cpuinfo))
    assert precision._first_cpu(str(tmp_path / "absent")) == {}
    monkeypatch.setattr(precision, "_first_cpu", lambda: first)
    assert precision.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_vendor() == "AuthenticAMD"
    features = precision.cpu_matrix_features()
    assert features["avx512_bf16"] is True and features["amx_bf16"] is False and precision.cpu_has_bf16_units()


def test_bf16_that_computes_in_float32_shares_float32s_cache_key(tmp_path, monkeypatch):
    base = ["dataset.clips_per_class=3", "dataset.duration=0.5", "dataset.n_folds=3", "device=cpu",
            f"cache.dir={tmp_path}"]  # fmt: skip

    def key(*extra):
        return make_plan(load(compose(base + list(extra)))).key

    monkeypatch.setattr(precision, "_first_cpu", lambda: AMX)
    assert key("precision=bf16") != key()
    monkeypatch.setattr(precision, "_first_cpu", lambda: NO_UNITS)
    assert key("precision=bf16") == key()


# few filters take the banded product (banded_max_conv), more the window products (WindowMax);
# a silent stretch (every band alike) makes exact ties between offsets: the first one wins them;
# 300 mels: 263 offsets, more than a byte counts
@pytest.mark.parametrize(
    "frames,bands,pad,filters,silent,mels",
    [(7, 86, 3, 5, False, 96), (3, 38, 1, 5, False, 96), (1, 38, 0, 5, False, 96), (7, 86, 3, 100, False, 96),
     (3, 38, 1, 24, False, 96), (1, 38, 0, 5, True, 96), (3, 38, 1, 24, True, 96), (1, 86, 0, 128, True, 96),
     (1, 38, 0, 16, True, 300)],
)  # fmt: skip
def test_the_training_max_pool_has_the_plain_max_pools_gradient(frames, bands, pad, filters, silent, mels):
    assert ((mels - bands + 1) * filters <= BANDED_COLUMNS) == (filters == 5)  # both forms are tested
    assert_plain_max_pools_gradient(frames, bands, pad, filters, silent, mels)


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("frames,bands,pad,filters", [(1, 38, 0, 24), (3, 38, 1, 24)])
def test_the_training_max_pool_in_chunks_has_the_plain_max_pools_gradient(frames, bands, pad, filters, input_grad, monkeypatch):
    """WindowMax a few frames at a time, the last chunk shorter, as at full size (where the
    cases above fit in one chunk): each chunk's gradients land on its own frames. Where the
    spectrogram needs no gradient (training), 1-frame filters over many offsets take the
    filters' gradient from their winning windows alone (winning_windows_gradient), ties in the
    silent frames included."""
    monkeypatch.setattr(base, "ONE_FRAME_BYTES", 400_000)
    monkeypatch.setattr(base, "WINDOW_BYTES", 400_000)
    spec = torch.zeros(2, 40 + 2 * pad, 96, dtype=torch.float64)
    assert (97 - bands) * filters > BANDED_COLUMNS  # WindowMax
    assert 40 % base.chunk_frames(spec, torch.zeros(filters, frames, bands, dtype=torch.float64)) > 0
    winners = []
    gradient = base.winning_windows_gradient
    monkeypatch.setattr(base, "winning_windows_gradient", lambda *a: winners.append(1) or gradient(*a))
    assert_plain_max_pools_gradient(frames, bands, pad, filters, True, 96, input_grad)
    assert bool(winners) == (frames == 1 and not input_grad)


def assert_plain_max_pools_gradient(
    frames: int, bands: int, pad: int, filters: int, silent: bool, mels: int, input_grad: bool = True
) -> None:
    g = torch.Generator().manual_seed(frames)
    spec = torch.randn(2, 40, mels, generator=g, dtype=torch.float64)
    if silent:
        spec[:, 10:30] = -4.0
    conv = torch.nn.Conv2d(1, filters, kernel_size=(frames, bands)).double()
    upstream = torch.randn(2, filters, 40 + 2 * pad - frames + 1, generator=g, dtype=torch.float64)

    def grads(fn):
        x = spec.clone().requires_grad_(input_grad)
        conv.zero_grad()
        out = fn(x)
        (out * upstream).sum().backward()
        return [g for g in (out.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()) if g is not None]

    def reference(x):  # the plain layers: 2-D convolution, max-pool over every frequency position
        h = F.conv2d(F.pad(x.unsqueeze(1), (0, 0, pad, pad)), conv.weight, conv.bias)
        return F.max_pool2d(h, (1, h.shape[-1]))[..., 0]

    for ours, plain in zip(grads(lambda x: frequency_max_conv(x, conv, pad)), grads(reference)):
        torch.testing.assert_close(ours, plain, rtol=1e-9, atol=1e-9)


# the banded product, the per-offset convolutions (few filters for their window) and WindowMax
@pytest.mark.parametrize("filters,frames,bands", [(8, 7, 86), (128, 7, 86), (512, 1, 38)])
def test_under_autocast_the_training_max_pool_returns_float32_gradients_close_to_float32s(filters, frames, bands):
    g = torch.Generator().manual_seed(0)
    spec = torch.randn(2, 64, 96, generator=g)
    conv = torch.nn.Conv2d(1, filters, kernel_size=(frames, bands))

    def weight_grad(reduced: bool) -> torch.Tensor:
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=reduced):
            out = frequency_max_conv(spec, conv, (frames - 1) // 2)
        out.float().sum().backward()
        return conv.weight.grad.clone()

    full, half = weight_grad(False), weight_grad(True)
    assert half.dtype == torch.float32
    # bf16 rounding changes which offset wins at some outputs, hence more than a rounding apart
    assert relative_difference(half, full) < 0.15


def assert_plain_features_and_gradients(front, x: torch.Tensor, plain) -> None:
    """A trained front-end's features of float64 ``x``, and the gradients a random projection of
    them sends to its parameters, against those of ``plain`` (the plain layers it stands for)."""
    params = list(front.parameters())
    trained, reference = front.features(x), plain(x)
    assert relative_difference(trained, reference.float()) < 1e-6  # the means are taken in float32
    g = torch.randn(trained.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(trained, params, g), torch.autograd.grad(reference, params, g)):
        assert relative_difference(got, want) < 1e-6


@pytest.mark.parametrize("bias", [0.0, 0.5])
def test_the_trained_vgg_has_the_plain_layers_features_and_gradients(bias):
    """weights=trained's VGG in float64 on the CPU (the first block's PooledProducts, the other
    blocks' SameConv3x3) against the plain layers it stands for: conv2d, ELU and max_pool2d, a
    silent stretch and a flat band making ties within pooling windows (the first position
    wins them, as in max_pool2d), nonzero biases included."""
    front = frontend("vgg").double().trainable()
    for conv in front.convs:
        torch.nn.init.constant_(conv.bias, bias)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1376, 96, generator=gen, dtype=torch.float64)  # (batch, frames, mels)
    x[:, 100:400] = -4.0
    x[1, :, 40:60] = 1.0

    def plain(x: torch.Tensor) -> torch.Tensor:
        means, h = [], x.unsqueeze(1)
        for conv, pool in zip(front.convs, POOLS):
            h = F.max_pool2d(F.elu(F.conv2d(h, conv.weight, conv.bias, padding=1)), pool)
            means.append(h.mean(dim=(2, 3)))
        return torch.cat(means, dim=1)

    assert_plain_features_and_gradients(front, x, plain)


def test_the_trained_sample_level_cnn_has_the_plain_layers_features_and_gradients():
    """weights=trained's sample-level CNN (WindowProduct's backward, max_pool2d) against the
    plain layers it stands for: conv1d, ReLU and max_pool1d, in float64."""
    front = frontend("sample_level").double().trainable()
    x = torch.randn(2, 2 * 3**7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def plain(x: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.conv1d(x.unsqueeze(1), front.stem.weight, front.stem.bias, stride=3))
        means = [h.mean(-1)]
        for conv in front.convs:
            h = F.max_pool1d(F.relu(F.conv1d(h, conv.weight, conv.bias, padding=1)), 3)
            means.append(h.mean(-1))
        return torch.cat(means, dim=1)

    assert_plain_features_and_gradients(front, x, plain)
