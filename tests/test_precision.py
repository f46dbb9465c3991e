"""precision=bf16 on the CPU: bf16 weights ahead of time give features close to float32's; a
CPU without bf16 units computes in float32 and says so; the training formulation of the
frequency max-pool has the plain max-pool's gradient."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import clips, frontend, tone, write_audio
from elm_audio import precision
from elm_audio.config import native_frontends
from elm_audio.datasets import Clip
from elm_audio.extract import ExtractSettings, extract
from elm_audio.frontends.base import BANDED_COLUMNS, frequency_max_conv
from elm_audio.frontends.profile import profile


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
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
    settings = ExtractSettings(batch_size=2, num_workers=0, progress=False, precision=precision_name)
    extract(front, wav_clips, out, torch.device("cpu"), settings)
    return out


def test_without_bf16_units_bf16_computes_in_float32_and_says_so_once(wav_clips, monkeypatch, capsys):
    front = frontend("temporal")
    full = extracted(front, wav_clips, "fp32")
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
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
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    half = extracted(front, wav_clips, "bf16")
    assert "no bf16 units" not in capsys.readouterr().err
    assert not np.array_equal(half, full)
    assert np.linalg.norm(half - full) / np.linalg.norm(full) < 0.02


def test_the_cpu_features_are_read_from_cpuinfo_flags(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert not precision.cpu_has_bf16_units()
    assert precision.cpu_matrix_features()["avx512_bf16"] is False
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert precision.cpu_has_bf16_units() and precision.cpu_matrix_features()["amx_bf16"] is True


# few filters take the banded product (banded_max_conv), more the per-offset convolutions
@pytest.mark.parametrize("frames,bands,pad,filters", [(7, 86, 3, 5), (3, 38, 1, 5), (1, 38, 0, 5), (7, 86, 3, 100), (3, 38, 1, 24)])
def test_the_training_max_pool_has_the_plain_max_pools_gradient(frames, bands, pad, filters):
    g = torch.Generator().manual_seed(frames)
    spec = torch.randn(2, 40, 96, generator=g, dtype=torch.float64)
    conv = torch.nn.Conv2d(1, filters, kernel_size=(frames, bands)).double()
    assert ((96 - bands + 1) * filters <= BANDED_COLUMNS) == (filters == 5)  # both forms are tested
    upstream = torch.randn(2, filters, 40 + 2 * pad - frames + 1, generator=g, dtype=torch.float64)

    def grads(fn):
        x = spec.clone().requires_grad_(True)
        conv.zero_grad()
        out = fn(x)
        (out * upstream).sum().backward()
        return out.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()

    def reference(x):  # the plain layers: 2-D convolution, max-pool over every frequency position
        h = F.conv2d(F.pad(x.unsqueeze(1), (0, 0, pad, pad)), conv.weight, conv.bias)
        return F.max_pool2d(h, (1, h.shape[-1]))[..., 0]

    for ours, plain in zip(grads(lambda x: frequency_max_conv(x, conv, pad)), grads(reference)):
        torch.testing.assert_close(ours, plain, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("filters", [8, 128])
def test_under_autocast_the_training_max_pool_returns_float32_gradients_close_to_float32s(filters):
    g = torch.Generator().manual_seed(0)
    spec = torch.randn(2, 64, 96, generator=g)
    conv = torch.nn.Conv2d(1, filters, kernel_size=(7, 86))

    def weight_grad(reduced: bool) -> torch.Tensor:
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=reduced):
            out = frequency_max_conv(spec, conv, 3)
        out.float().sum().backward()
        return conv.weight.grad.clone()

    full, half = weight_grad(False), weight_grad(True)
    assert half.dtype == torch.float32
    # bf16 rounding changes which offset wins at some outputs, hence more than a rounding apart
    assert relative_difference(half, full) < 0.15
