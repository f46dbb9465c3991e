import numpy as np
import pytest
import soundfile as sf
from helpers.audio import tone, write_audio

from elm_audio.sound.decode import SAMPLE_RATE, AudioError, fit_length, load, read_info


def dominant_frequency(signal: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize("ext", ["wav", "au", "flac", "mp3", "ogg"])
def test_every_format_decodes_to_mono_at_12khz_with_its_pitch(tmp_path, ext):
    sr = 44_100
    path = write_audio(tmp_path / f"clip.{ext}", tone(440.0, 2.0, sr, channels=2), sr)
    signal = load(path)
    assert signal.ndim == 1 and signal.dtype == np.float32
    # MP3 encoders add a little padding; everything else keeps its length exactly
    assert abs(len(signal) - 2.0 * SAMPLE_RATE) <= (0.1 * SAMPLE_RATE if ext == "mp3" else 1)
    assert abs(dominant_frequency(signal, SAMPLE_RATE) - 440.0) < 3.0


def test_stereo_is_mixed_down_by_averaging_channels(tmp_path):
    left = np.full(1200, 0.5, dtype=np.float32)
    right = np.full(1200, -0.1, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], 1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load(path), 0.2, atol=1e-6)


def test_resampling_matches_soxr_output_length_and_rate(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(1000.0, 1.0, 48_000), 48_000)
    signal = load(path)
    assert len(signal) == 12_000
    assert abs(dominant_frequency(signal, SAMPLE_RATE) - 1000.0) < 2.0


def test_fit_length_crops_from_the_start():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 4, "crop_or_repeat"), [0, 1, 2, 3])
    np.testing.assert_array_equal(fit_length(x, 4, "crop_or_zero"), [0, 1, 2, 3])


def test_fit_length_repeat_pads_by_tiling_then_crops():
    x = np.array([1, 2, 3], dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 8, "crop_or_repeat"), [1, 2, 3, 1, 2, 3, 1, 2])


def test_fit_length_zero_pads_at_the_end():
    x = np.array([1, 2, 3], dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 5, "crop_or_zero"), [1, 2, 3, 0, 0])


def test_unknown_fit_mode_names_the_key():
    with pytest.raises(ValueError, match="audio.fit"):
        fit_length(np.ones(3, dtype=np.float32), 5, "stretch")


def test_unreadable_file_names_the_file_and_the_way_out(tmp_path):
    bad = tmp_path / "jazz.00054.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    with pytest.raises(AudioError) as err:
        load(bad)
    assert str(bad) in str(err.value) and "on_bad_clip=skip" in str(err.value)
    with pytest.raises(AudioError):
        read_info(bad)


def test_empty_file_is_reported_as_empty(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 22_050)
    with pytest.raises(AudioError, match="no audio"):
        load(empty)
    with pytest.raises(AudioError, match="zero length"):
        read_info(empty)


def test_read_info_reads_the_header(tmp_path):
    path = write_audio(tmp_path / "a.flac", tone(300.0, 1.5, 22_050, channels=2), 22_050)
    info = read_info(path)
    assert (info.sample_rate, info.frames, info.channels) == (22_050, 33_075, 2)
    assert info.duration == pytest.approx(1.5)


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3"])
def test_decoding_only_the_start_gives_the_same_samples(tmp_path, ext):
    sr = 44_100
    path = write_audio(tmp_path / f"long.{ext}", tone(523.0, 6.0, sr, channels=2, seed=3), sr)
    full = load(path)
    start = load(path, max_samples=24_000)  # 2 s of the 6 at 12 kHz
    assert 24_000 <= len(start) < len(full)
    np.testing.assert_allclose(start[:24_000], full[:24_000], atol=1e-5)
    short = load(path, max_samples=10 * 12_000)  # more than the file holds: all of it
    np.testing.assert_array_equal(short, full)
