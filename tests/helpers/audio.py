"""The one audio builder of the tests: tones (in noise, or clean), folders of two-tone classes,
batches of tones as a front-end's input, and files in every format a collection holds.

Imports only NumPy, torch and soundfile (no MLflow): tests/test_device_paths.py, run without
conftest.py on a machine without MLflow, takes its waveforms from here."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

# soundfile's arguments for each extension a collection may hold
WRITE_KW = {
    "wav": {},
    "au": {},
    "flac": {},
    "ogg": {"format": "OGG", "subtype": "VORBIS"},
    "mp3": {"format": "MP3", "subtype": "MPEG_LAYER_III"},
}

# the two classes of a collection that any front-end tells apart: a low and a high tone
TWO_TONES = {"low": 220.0, "high": 1760.0}


def tone(
    freq: float, seconds: float, sr: int, channels: int = 1, seed: int = 0, amplitude: float = 0.4, noise: float = 0.01
) -> np.ndarray:
    """A sine of ``freq`` Hz in white noise (``noise``: its standard deviation; 0 for a clean
    sine), as float32 samples x ``channels`` (every channel the same)."""
    t = np.arange(int(seconds * sr)) / sr
    mono = amplitude * np.sin(2 * np.pi * freq * t)
    if noise:
        mono = mono + noise * np.random.default_rng(seed).standard_normal(len(t))
    return np.stack([mono] * channels, axis=1).astype(np.float32)


def write_audio(path: Path, signal: np.ndarray, sr: int) -> Path:
    """Write ``signal`` to ``path`` in the format its extension names (see WRITE_KW)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, signal, sr, **WRITE_KW[path.suffix.lstrip(".").lower()])
    return path


def tone_folder(
    root: Path,
    per_class: int,
    classes: Mapping[str, float] = TWO_TONES,
    *,
    seconds: float = 1.0,
    sr: int | Sequence[int] = 16_000,
    step: float = 0.05,
    formats: Sequence[str] = ("wav",),
    stereo: bool = False,
    name: str = "{label}_{i}",
) -> Path:
    """``root/<class>/<name>.<ext>``: ``per_class`` clips of each class, clip i a tone of the
    class's frequency x (1 + step * i), its noise seeded with i. ``formats`` and ``sr`` (one rate
    or several) cycle over the clips; ``stereo`` makes every other clip (odd i) two-channel."""
    rates = [sr] if isinstance(sr, int) else list(sr)
    for label, base in classes.items():
        for i in range(per_class):
            ext, rate = formats[i % len(formats)], rates[i % len(rates)]
            channels = 1 + i % 2 if stereo else 1
            write_audio(root / label / f"{name.format(label=label, i=i)}.{ext}", tone(base * (1 + step * i), seconds, rate, channels, i), rate)
    return root


def tone_batch(n: int, samples: int, sr: int = 12_000, base: float = 110.0, seed: int = 0) -> torch.Tensor:
    """n waveforms of ``samples`` samples (float32, n x samples): clip i a tone of base x (i + 1)
    Hz in noise, as a front-end takes them."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / sr
    tones = torch.stack([torch.sin(2 * math.pi * (base * (i + 1)) * t) for i in range(n)])
    return (0.3 * tones + 0.05 * torch.randn(n, samples, generator=g)).float()


def clips(front, n: int, seed: int = 0) -> torch.Tensor:
    """n waveforms of the front-end's input length (at 12 kHz): tones of different pitch in noise."""
    return tone_batch(n, front.input_samples, 12_000, seed=seed)
