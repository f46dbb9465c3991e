"""Extraction with decoding workers: the same features and the same bad-clip handling as
decoding in the main process, whichever batch a bad clip falls in."""

import numpy as np
import pytest
import torch
from helpers.audio import tone, write_audio

from elm_audio.config import compose
from elm_audio.datasets import Clip
from elm_audio.extraction.extract import ExtractSettings, extract
from elm_audio.frontends.profile import profile
from elm_audio.settings.components import build_frontend
from elm_audio.sound.decode import AudioError

BROKEN = (0, 5)  # in the first batch (decoded before the workers start) and in a later one


@pytest.fixture()
def clips(tmp_path):
    out = []
    for i in range(7):
        path = tmp_path / f"clip{i}.wav"
        if i in BROKEN:
            path.write_bytes(b"RIFF but not a wave file")
        else:
            write_audio(path, tone(220.0 * (i + 1), 0.5, 16_000, seed=i), 16_000)
        out.append(Clip(f"clip{i}", str(path), "x"))
    return out


def run(clips, workers, policy="skip"):
    front = build_frontend(compose(["frontend=temporal", "feature_size=small"]))
    out = np.full((len(clips), profile(front)["feature_dim"]), np.nan, np.float32)
    settings = ExtractSettings(batch_size=2, num_workers=workers, on_bad_clip=policy, progress=False)
    bad, _ = extract(front, clips, out, torch.device("cpu"), settings)
    return out, bad


def test_decoding_threads_give_the_same_features_in_order_and_skip_the_same_clips(clips):
    alone, bad_alone = run(clips, workers=0)
    pooled, bad_pooled = run(clips, workers=2)  # two threads: batches may finish out of turn
    assert set(bad_alone) == set(bad_pooled) == {f"clip{i}" for i in BROKEN}
    good = [i for i in range(len(clips)) if i not in BROKEN]
    assert np.isfinite(pooled[good]).all() and np.isnan(pooled[list(BROKEN)]).all()
    np.testing.assert_allclose(pooled[good], alone[good], rtol=1e-5, atol=1e-6)
    assert not np.allclose(pooled[good[0]], pooled[good[1]])  # rows hold their own clips


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("first_bad", [0, 5])
def test_the_first_bad_clip_stops_an_extraction_by_its_path(clips, workers, first_bad):
    chosen = clips[1:] if first_bad == 5 else clips  # without clip0, clip5 sits in the third batch
    with pytest.raises(AudioError, match=f"clip{first_bad}.wav"):
        run(chosen, workers, policy="error")


def test_the_progress_bar_names_the_front_end_as_the_config_does(clips, capsys, tmp_path):
    from elm_audio.settings.settings import load

    settings = load(compose(["frontend=timbral_temporal", "feature_size=small", f"cache.dir={tmp_path}"])).extraction
    assert settings.label == "timbral_temporal (small)"  # not the class's name, Musical
    front = build_frontend(compose(["frontend=temporal", "feature_size=small"]))
    out = np.full((2, profile(front)["feature_dim"]), np.nan, np.float32)
    shown = ExtractSettings(num_workers=0, on_bad_clip="skip", progress=True, label="temporal (small)")
    extract(front, clips[1:3], out, torch.device("cpu"), shown)
    assert "extracting temporal (small)" in capsys.readouterr().err
