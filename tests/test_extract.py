"""Extraction with decoding workers: the same features and the same bad-clip handling as
decoding in the main process, whichever batch a bad clip falls in."""

import threading

import numpy as np
import pytest
import torch
from helpers.audio import tone, write_audio

from elm_audio.config import compose
from elm_audio.datasets import Clip
from elm_audio.extraction import extract as extraction
from elm_audio.extraction.extract import Decoder, ExtractSettings, extract
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


def good_clips(tmp_path, n: int) -> list[Clip]:
    out = []
    for i in range(n):
        path = tmp_path / f"tone{i}.wav"
        write_audio(path, tone(110.0 * (i + 2), 0.5, 16_000, seed=i), 16_000)
        out.append(Clip(f"tone{i}", str(path), "x"))
    return out


def test_the_next_chunk_decodes_while_this_one_computes_and_is_decoded_once(tmp_path, monkeypatch):
    """A run's chunks share one Decoder: while a chunk's last batch computes, the first batches
    of the chunk named next (``then``) are decoding, and that chunk's extraction takes them
    rather than decoding its clips again; its rows are its own clips' features."""
    clips = good_clips(tmp_path, 8)
    first, second = clips[:4], clips[4:]
    decoded: list[str] = []  # the first clip of each batch, as its decoding starts
    second_started = threading.Event()
    real_decode = extraction._decode

    def decode(audio, start, stop):
        decoded.append(audio.clips[start].clip_id)
        if audio.clips[start].clip_id == "tone4":
            second_started.set()
        return real_decode(audio, start, stop)

    monkeypatch.setattr(extraction, "_decode", decode)
    front = build_frontend(compose(["frontend=temporal", "feature_size=small"]))
    width = profile(front)["feature_dim"]
    settings = ExtractSettings(batch_size=2, num_workers=1, progress=False)
    started_while_computing = []

    def compute(x):
        if len(started_while_computing) == 1:  # the first chunk's second (last) batch
            started_while_computing.append(second_started.wait(timeout=30))
        else:
            started_while_computing.append(None)
        return front.features(x)

    rows = np.full((8, width), np.nan, np.float32)
    with Decoder(front, settings) as decoder:
        extract(front, first, rows[:4], torch.device("cpu"), settings, compute, decoder=decoder, then=second)
        extract(front, second, rows[4:], torch.device("cpu"), settings, compute, decoder=decoder)
    assert started_while_computing[1] is True
    assert decoded == ["tone0", "tone2", "tone4", "tone6"]  # every batch decoded once
    alone = np.full((8, width), np.nan, np.float32)
    extract(front, clips, alone, torch.device("cpu"), ExtractSettings(batch_size=2, num_workers=0, progress=False))
    np.testing.assert_allclose(rows, alone, rtol=1e-5, atol=1e-6)


def test_batches_decoded_for_a_chunk_another_process_took_are_dropped(tmp_path, monkeypatch):
    """The chunk named next was claimed elsewhere meanwhile: this process computes another, whose
    rows are its own clips' (nothing decoded for the first is taken for it)."""
    clips = good_clips(tmp_path, 6)
    front = build_frontend(compose(["frontend=temporal", "feature_size=small"]))
    width = profile(front)["feature_dim"]
    settings = ExtractSettings(batch_size=2, num_workers=2, progress=False)
    rows = np.full((6, width), np.nan, np.float32)
    with Decoder(front, settings) as decoder:
        extract(front, clips[:2], rows[:2], torch.device("cpu"), settings, decoder=decoder, then=clips[2:4])
        extract(front, clips[4:], rows[4:], torch.device("cpu"), settings, decoder=decoder, then=clips[2:4])
        extract(front, clips[2:4], rows[2:4], torch.device("cpu"), settings, decoder=decoder)
    alone = np.full((6, width), np.nan, np.float32)
    extract(front, clips, alone, torch.device("cpu"), ExtractSettings(batch_size=2, num_workers=0, progress=False))
    np.testing.assert_allclose(rows, alone, rtol=1e-5, atol=1e-6)
