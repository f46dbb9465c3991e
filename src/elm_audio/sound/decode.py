"""Decoding, mono mix-down, resampling and length fitting (docs/method.md, "Inputs")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from ..config import ConfigError, shown

SAMPLE_RATE = 12_000
FitMode = Literal["crop_or_repeat", "crop_or_zero"]
FIT_MODES: tuple[str, ...] = ("crop_or_repeat", "crop_or_zero")


class AudioError(RuntimeError):
    """A clip that cannot be used: unreadable, empty, or of an unknown format."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"{path}: {reason}. Replace or remove the file, or run with "
            "dataset.on_bad_clip=skip to leave such clips out (the run records which)."
        )


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the audio."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


# What a file of each extension starts with. libsndfile reads any bytes named .au as headerless
# mu-law, so a text file, or a damaged download, would otherwise decode as a short noise.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    ".wav": (b"RIFF", b"RF64", b"BW64"),
    ".au": (b".snd",),
    ".flac": (b"fLaC", b"ID3"),
    ".ogg": (b"OggS",),
    ".mp3": (b"ID3",),  # or an MPEG frame sync, checked below
}
CONTAINERS = {".wav": "a WAV (RIFF)", ".au": "a Sun/NeXT .au", ".flac": "a FLAC", ".ogg": "an Ogg", ".mp3": "an MP3"}
# A clip whose loudest sample is below this is reported as silent (a warning, not an error).
SILENCE = 1e-5


def check_container(path: str | Path) -> None:
    """AudioError when the file's first bytes are not those of the container its extension names."""
    suffix = Path(path).suffix.lower()
    if suffix not in SIGNATURES:
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise AudioError(path, f"cannot be opened ({err.strerror})") from err
    if not head:
        raise AudioError(path, "holds no audio (zero length)")
    mpeg_sync = suffix == ".mp3" and len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    if not head.startswith(SIGNATURES[suffix]) and not mpeg_sync:
        raise AudioError(path, f"is named {suffix} but is not {CONTAINERS[suffix]} file (it starts with the bytes {head.hex(' ')})")


def read_info(path: str | Path) -> AudioInfo:
    """Read a file's header; raises AudioError when it is unreadable, empty or not the
    container its extension names."""
    check_container(path)
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError
        raise AudioError(path, f"cannot be read as audio ({err})") from err
    if info.frames <= 0:
        raise AudioError(path, "holds no audio (zero length)")
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


# Read past the last sample needed, so the resampler's filter sees real signal there.
READ_MARGIN_SECONDS = 0.1


def load(path: str | Path, sample_rate: int = SAMPLE_RATE, max_samples: int | None = None) -> np.ndarray:
    """Decode a file to a mono float32 signal at ``sample_rate``.

    With ``max_samples`` only the start of the file that gives them is decoded (clips are
    cropped from the start): a long recording costs no more than the input it feeds. Raises
    AudioError for a file that cannot be decoded, holds nothing, or holds NaN or infinite samples.
    """
    check_container(path)
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            frames = -1
            if max_samples is not None:
                frames = int(np.ceil((max_samples / sample_rate + READ_MARGIN_SECONDS) * sr))
            data = f.read(frames, dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(path, f"cannot be decoded ({err})") from err
    if data.shape[0] == 0:
        raise AudioError(path, "holds no audio (zero length)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).any(axis=1).sum())
        raise AudioError(path, f"holds non-finite samples (NaN or infinity in {bad} of {data.shape[0]} frames)")
    channels = data.shape[1]
    # channel by channel, not mean(axis=1), whose strided sum took longer than decoding an MP3,
    # nor a BLAS product, whose threads would spin beside the network's in a decoding thread
    mono = data[:, 0].copy()
    for c in range(1, channels):
        mono += data[:, c]
    if channels > 1:
        mono *= np.float32(1 / channels)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(mono)


def fit_length(signal: np.ndarray, length: int, mode: FitMode = "crop_or_repeat") -> np.ndarray:
    """Crop a longer signal to its first ``length`` samples; pad a shorter one.

    ``crop_or_repeat`` repeats the clip until it is long enough (what the paper does for
    UrbanSound8K), ``crop_or_zero`` appends silence.
    """
    if mode not in FIT_MODES:
        raise ConfigError(f"audio.fit={shown(mode)} is not one of {', '.join(FIT_MODES)}")
    if len(signal) == 0:
        raise ValueError("cannot fit an empty signal")
    if len(signal) >= length:
        return signal[:length]
    if mode == "crop_or_repeat":
        reps = -(-length // len(signal))
        return np.tile(signal, reps)[:length]
    out = np.zeros(length, dtype=signal.dtype)
    out[: len(signal)] = signal
    return out
