"""The export: every front-end as a HEAR 2021 module (elm_audio.hear) and an X-ARES encoder
(elm_audio.xares), held to what the official checkers check. hearvalidator cannot be installed
on Python >= 3.9, so its checks are mirrored here, each named as its ValidateModel method names
it; X-ARES's ``check_audio_encoder`` likewise."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soxr
import torch
from helpers.audio import tone_batch
from helpers.frontends import LENGTHS, frontend

import elm_audio.hear as hear
from elm_audio.sound.decode import fit_length
from elm_audio.sound.resample import Resampler

ACCEPTABLE_SAMPLE_RATE = [16000, 22050, 32000, 44100, 48000]  # hearvalidator's list


@pytest.fixture(scope="module", params=["temporal", "mfcc"])
def model(request) -> hear.HearModel:
    """hearvalidator's check_load_model: load_model() with the defaults but a small, fast front-end."""
    loaded = hear.load_model(frontend=request.param, feature_size="small")
    assert isinstance(loaded, torch.nn.Module)
    return loaded.to("cpu")


def white_noise(num_audio: int, length: float, sample_rate: int) -> torch.Tensor:
    """hearvalidator's test audio: uniform white noise in [-1, 1]."""
    return torch.rand((num_audio, int(length * sample_rate))) * 2 - 1.0


def test_check_sample_rate_and_check_embedding_size(model):
    assert model.sample_rate in ACCEPTABLE_SAMPLE_RATE
    assert isinstance(model.scene_embedding_size, int)
    assert isinstance(model.timestamp_embedding_size, int)
    for name in ("load_model", "get_scene_embeddings", "get_timestamp_embeddings"):
        assert callable(getattr(hear, name))


@pytest.mark.parametrize("length", [1.07, 1.98, 4.0])
def test_check_timestamp_embeddings(model, length):
    num_audio = 2
    embeddings, timestamps = hear.get_timestamp_embeddings(white_noise(num_audio, length, model.sample_rate), model)
    assert embeddings.dtype == torch.float32  # torch_timestamp_embeddings' dtype check
    embeddings, timestamps = embeddings.numpy(), timestamps.numpy()
    assert embeddings.ndim == 3 and timestamps.ndim == 2
    assert embeddings.shape[0] == num_audio  # the batch size is kept
    assert embeddings.shape[:2] == timestamps.shape
    assert embeddings.shape[2] == model.timestamp_embedding_size
    assert np.isfinite(embeddings).all()
    diff = np.diff(timestamps)
    avg = diff.mean()
    assert diff.max() <= 50.0  # the validator's suggested hop (a warning there)
    assert np.abs(diff - avg).max() <= 1  # regular to 1 ms (an error there)
    assert timestamps.min() <= avg  # they begin at the start
    assert timestamps.max() <= 1000 * length  # within the audio (an error there)
    assert timestamps.max() >= 1000 * length - avg and timestamps.max() >= 1000 * length - 50  # up to its end


def test_check_scene_embeddings(model):
    num_audio, length = 4, 2.74
    embeddings = hear.get_scene_embeddings(white_noise(num_audio, length, model.sample_rate), model)
    embeddings = embeddings.detach().cpu().numpy()
    assert embeddings.dtype == np.float32
    assert embeddings.ndim == 2
    assert embeddings.shape[0] == num_audio
    assert embeddings.shape[1] == model.scene_embedding_size


def tones(n: int, seconds: float, sr: int = 12_000) -> torch.Tensor:
    return tone_batch(n, int(seconds * sr), sr, base=220.0, seed=n)


@pytest.mark.parametrize("name", sorted(LENGTHS))
def test_every_front_end_exports_the_vector_a_run_computes(name):
    """On 12 kHz audio (no resampling), a short sound's scene embedding is the run's feature
    vector of it (repeated to the input's length), with the run's weights for the same seed; its
    timestamp embeddings, pooled over windows wider than the input, are that vector again."""
    native = frontend(name, "small", 1)
    model = hear.load_model(frontend=name, feature_size="small", seed=1, sample_rate=12_000)
    sound = tones(1, 1.07)
    expected = native.features(native.prepare(torch.from_numpy(fit_length(sound[0].numpy(), native.input_samples))[None]))
    scene = hear.get_scene_embeddings(sound, model)
    assert scene.shape == (1, LENGTHS[name][0]) == (1, model.scene_embedding_size)
    torch.testing.assert_close(scene, expected, rtol=1e-5, atol=1e-6)
    wide = hear.load_model(frontend=name, feature_size="small", seed=1, sample_rate=12_000, window_ms=120_000)
    embeddings, timestamps = hear.get_timestamp_embeddings(sound, wide)
    assert embeddings.shape == (1, 27, model.timestamp_embedding_size) and timestamps[0, -1] == 1040.0
    torch.testing.assert_close(embeddings[0], expected.expand(27, -1), rtol=1e-4, atol=1e-4)


def test_timestamp_embeddings_follow_the_sound_over_time():
    """A tone that starts halfway: each timestamp describes the audio around it (cnn_7x96's
    filters span 7 frames, 150 ms), so the timestamps of the silent half, away from the tone,
    are alike, and unlike those of the tone."""
    model = hear.load_model(frontend="cnn_7x96", feature_size="small", sample_rate=12_000)
    sound = torch.zeros(1, 24_000)
    sound[0, 12_000:] = tones(1, 1.0)[0]
    embeddings, timestamps = hear.get_timestamp_embeddings(sound, model)
    first = embeddings[0, (timestamps[0] > 200) & (timestamps[0] < 800)]
    second = embeddings[0, timestamps[0] > 1200]
    assert torch.allclose(first, first[:1].expand_as(first), atol=1e-5)  # silence looks the same throughout
    assert (second.mean(0) - first.mean(0)).abs().max() > 0.1


def test_a_long_sound_is_the_weighted_mean_of_its_windows_at_the_large_size():
    """A 70 s sound (three windows of the 29.3 s input, the last overlapping the second) at the
    large size, three sounds in batches of two: each window's means count by the audio it adds."""
    native = frontend("temporal", "large")
    model = hear.load_model(frontend="temporal", feature_size="large", sample_rate=12_000, batch_size=2)
    sounds = tones(3, 70.0)
    size, n = native.input_samples, sounds.shape[1]
    windows = [(0, size), (size, size), (n - size, n - 2 * size)]
    expected = sum(w * native.features(native.prepare(sounds[:, s : s + size])).double() for s, w in windows) / n
    scene = hear.get_scene_embeddings(sounds, model)
    assert scene.shape == (3, 3584) and scene.dtype == torch.float32
    torch.testing.assert_close(scene, expected.float(), rtol=1e-5, atol=1e-6)
    embeddings, timestamps = hear.get_timestamp_embeddings(sounds, model)
    assert embeddings.shape == (3, 1751, 3584) and timestamps[0, -1] == 70_000.0
    assert np.abs(np.diff(timestamps.numpy()) - 40.0).max() < 1e-3


def test_model_file_is_saved_weights_or_a_yaml_of_options(tmp_path: Path):
    sound = white_noise(1, 1.0, 16_000)
    weights = tmp_path / "weights.pt"
    digest = hear.save_weights(weights, frontend="temporal", feature_size="small", seed=3)
    assert digest == hashlib.sha256(weights.read_bytes()).hexdigest()
    loaded = hear.load_model(str(weights))
    assert digest in loaded.description
    same = hear.get_scene_embeddings(sound, hear.load_model(frontend="temporal", feature_size="small", seed=3))
    torch.testing.assert_close(hear.get_scene_embeddings(sound, loaded), same)
    other = hear.get_scene_embeddings(sound, hear.load_model(frontend="temporal", feature_size="small", seed=0))
    assert not torch.allclose(other, same)
    bare = tmp_path / "bare.pt"  # a plain state dict takes the options given beside it
    torch.save(loaded.frontend.state_dict(), bare)
    torch.testing.assert_close(hear.get_scene_embeddings(sound, hear.load_model(str(bare), frontend="temporal", feature_size="small")), same)
    options = tmp_path / "mfcc.yaml"
    options.write_text("frontend: mfcc\nseed: 2\n")
    from_yaml = hear.load_model(str(options))
    assert from_yaml.scene_embedding_size == 120 and hashlib.sha256(options.read_bytes()).hexdigest() in from_yaml.description
    with pytest.raises(ValueError, match="frontend=nope is not one of"):
        hear.load_model(frontend="nope")
    with pytest.raises(ValueError, match="unknown option"):
        hear.load_model(width=3)


@pytest.mark.parametrize("rate", ACCEPTABLE_SAMPLE_RATE)
def test_the_torch_resampler_matches_soxr(rate):
    """Band-limited audio (tones and noise below 5 kHz) resampled to 12 kHz as soxr's HQ
    resampler does, away from the ends (the two treat the signal's edges differently)."""
    rng = np.random.default_rng(rate)
    n = 2 * rate
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) > 5000] = 0
    noise = np.fft.irfft(spectrum, n)
    t = np.arange(n) / rate
    x = (0.3 * noise / np.abs(noise).max() + 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 4800 * t)).astype(np.float32)
    expected = soxr.resample(x, rate, 12_000, quality="HQ")
    got = Resampler(rate, 12_000)(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected)[200:-200].max() < 2e-4


def check_audio_encoder(encoder: torch.nn.Module) -> None:
    """X-ARES's check_audio_encoder, rule by rule."""
    assert type(encoder).__name__.endswith("Encoder")  # class name
    assert isinstance(encoder, torch.nn.Module)
    assert hasattr(encoder, "output_dim") and hasattr(encoder, "sampling_rate")
    sample_audio = torch.randn(2, 50000)
    encoded = encoder(sample_audio)
    assert isinstance(encoded, torch.Tensor)
    assert encoded.ndim == 3  # [B, T, D]
    assert encoded.size(0) == sample_audio.size(0)
    assert encoded.size(2) == encoder.output_dim


def test_the_xares_encoder_passes_check_audio_encoder(monkeypatch):
    from elm_audio.xares import ElmAudioEncoder

    monkeypatch.setenv("ELM_AUDIO_FRONTEND", "temporal")
    monkeypatch.setenv("ELM_AUDIO_FEATURE_SIZE", "small")
    encoder = ElmAudioEncoder()
    check_audio_encoder(encoder)
    assert encoder.sampling_rate == 16_000 and encoder.output_dim == 112 and encoder.hop_size_in_ms == 40.0
    assert encoder(torch.randn(50000)).shape == (1, 50000 * 1000 // 16000 // 40 + 1, 112)
    monkeypatch.setenv("ELM_AUDIO_SEED", "two")
    with pytest.raises(ValueError, match="ELM_AUDIO_SEED=two must be a whole number"):
        ElmAudioEncoder()


def test_nothing_in_elm_audio_imports_tensorflow_or_torchaudio():
    package = Path(hear.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in ("tensorflow", "torchaudio", "torchcodec")], path
