"""The torch log-mel and MFCC statistics against librosa, the reference implementation."""

import librosa
import numpy as np
import pytest
import torch

from elm_audio.frontends.base import SPECTROGRAM_FRAMES, FrontEnd
from elm_audio.sound.dsp import LogMel, MFCCStatistics

SR = 12_000


def music_like(n: int, seed: int) -> np.ndarray:
    """Harmonic notes with decaying envelopes over noise: a wide dynamic range, as music has."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    out = 0.003 * rng.standard_normal(n)
    for start in np.arange(0, n / SR, 0.4):
        f0 = rng.uniform(100, 1000)
        env = np.exp(-np.clip(t - start, 0, None) / 0.1) * (t >= start)
        out += sum(0.5**h * np.sin(2 * np.pi * f0 * (h + 1) * t) for h in range(4)) * env
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def librosa_logmel(y: np.ndarray) -> np.ndarray:
    S = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=512, hop_length=256, n_mels=96, power=2.0, fmin=0.0, fmax=6000.0
    )
    return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80.0).T


def librosa_mfcc_statistics(y: np.ndarray) -> np.ndarray:
    m = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)
    d1 = m[:, 1:] - m[:, :-1]
    d2 = d1[:, 1:] - d1[:, :-1]
    return np.concatenate([f(x, axis=1) for x in (m, d1, d2) for f in (np.mean, np.std)])


def test_logmel_matches_librosa_within_a_thousandth_of_a_db():
    n = 60_000
    clips = np.stack([music_like(n, seed) for seed in range(3)])
    ours = LogMel()(torch.from_numpy(clips)).numpy()
    for clip, mine in zip(clips, ours):
        ref = librosa_logmel(clip)
        assert mine.shape == ref.shape == (1 + n // 256, 96)
        assert np.abs(mine - ref).max() < 1e-3


def test_spectrogram_input_has_1376_frames_of_96_bands():
    class Probe(FrontEnd):
        input_kind = "spectrogram"

    probe = Probe()
    wave = torch.from_numpy(music_like(probe.input_samples, 0))[None]
    assert probe.prepare(wave).shape == (1, SPECTROGRAM_FRAMES, 96)


def test_mfcc_statistics_match_librosa_within_a_thousandth():
    clips = np.stack([music_like(48_000, seed) for seed in (5, 6)])
    ours = MFCCStatistics()(torch.from_numpy(clips)).numpy()
    assert ours.shape == (2, 120)
    for clip, mine in zip(clips, ours):
        np.testing.assert_allclose(mine, librosa_mfcc_statistics(clip), atol=1e-3, rtol=0)


def test_each_clip_floors_at_80_db_below_its_own_peak():
    loud = music_like(24_000, 1)
    loud[12_000:] = 0.0  # silence: its power is below any floor
    quiet = loud * 0.1  # 20 dB down: its floor stays above the amin floor of -100 dB
    out = LogMel()(torch.from_numpy(np.stack([loud, quiet]))).numpy()
    for spec in out:
        assert spec.max() - spec.min() == pytest.approx(80.0, abs=1e-3)
    # the quiet clip's floor is its own, not the batch's
    assert out[1].min() == pytest.approx(out[0].min() - 20.0, abs=0.01)
