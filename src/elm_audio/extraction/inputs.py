"""From decoded audio to a front-end's input, in one of two fitting stages.

``waveform`` (the clean method, docs/method.md "Inputs"): the decoded waveform is fitted to the
input length (cropped, or repeat- or zero-padded), then the log-mel or the MFCCs are computed
on it. ``frames`` (the original code, docs/method.md "The original code, exactly"): the log-mel
is computed on the whole clip (its dB floor set by the whole clip's maximum), then its frames are
cropped to the first 1,376 or tiled (repeat-pad) or followed by 0 dB rows (zero-pad); the MFCC
statistics are taken over the whole clip (only a clip shorter than one MFCC frame is padded).
Waveform front-ends are fitted the same way in both stages.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..frontends import FrontEnd
from ..sound.decode import fit_length

FIT_STAGES = ("waveform", "frames")
# The original pads a clip for its MFCCs only when it is shorter than one 2,048-sample frame.
MFCC_MIN_SAMPLES = 2048


@dataclass(frozen=True)
class InputSettings:
    fit: str = "crop_or_repeat"  # audio.fit
    stage: str = "waveform"  # audio.fit_stage
    stft_padding: str = "zeros"  # audio.stft_padding
    min_fraction: float = 0.001  # audio.min_fraction: a shorter clip (of the input's length) is a bad clip


def min_samples(frontend: FrontEnd, min_fraction: float) -> int:
    """The fewest decoded samples a usable clip has (``audio.min_fraction`` of the input)."""
    return max(1, math.ceil(min_fraction * frontend.input_samples))


def too_short(n_samples: int, frontend: FrontEnd, settings: InputSettings) -> str | None:
    """Why a decoded clip is too short to use, or None."""
    if n_samples < min_samples(frontend, settings.min_fraction):
        rate = frontend.sample_rate
        return (
            f"decodes to {n_samples / rate:.3f} s, less than audio.min_fraction={settings.min_fraction} "
            f"of the {frontend.input_samples / rate:.1f} s input"
        )
    return None


def whole_clip(frontend: FrontEnd, settings: InputSettings) -> bool:
    """Whether the front-end's input is computed from the whole decoded clip."""
    if not frontend.fits_input:  # an imported model: it gets each clip whole
        return True
    return settings.stage == "frames" and (frontend.input_kind == "spectrogram" or frontend.whole_clip_statistics)


def samples_to_decode(frontend: FrontEnd, settings: InputSettings) -> int | None:
    """How much of a clip to decode from its start; None for all of it."""
    return None if whole_clip(frontend, settings) else frontend.input_samples


def fit_decoded(signal: np.ndarray, frontend: FrontEnd, settings: InputSettings) -> np.ndarray:
    """The part of the input computed where the clip is decoded (a decoding thread)."""
    if not whole_clip(frontend, settings):
        return fit_length(signal, frontend.input_samples, settings.fit)
    if frontend.whole_clip_statistics and len(signal) < MFCC_MIN_SAMPLES:
        return fit_length(signal, MFCC_MIN_SAMPLES, settings.fit)
    return signal


def fit_frames(spec: torch.Tensor, n_frames: int, fit: str) -> torch.Tensor:
    """(frames, bands) -> (n_frames, bands): the first ``n_frames``, or the frame sequence
    repeated until long enough (crop_or_repeat), or followed by rows of 0.0 (crop_or_zero:
    0 dB, not the floor, as the original appends)."""
    if spec.shape[0] >= n_frames:
        return spec[:n_frames]
    if fit == "crop_or_repeat":
        return spec.repeat(-(-n_frames // spec.shape[0]), 1)[:n_frames]
    return torch.cat([spec, spec.new_zeros(n_frames - spec.shape[0], spec.shape[1])])


def network_inputs(
    frontend: FrontEnd, signals: torch.Tensor | Sequence[np.ndarray], device: torch.device, settings: InputSettings
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Batches of the front-end's input and the positions of their clips in ``signals``:
    one batch where every clip has the input's shape, a batch per clip where they differ
    (whole-clip MFCC statistics)."""
    if not whole_clip(frontend, settings):  # waveforms fitted to the input length, stacked by the decoding thread
        batch = signals if isinstance(signals, torch.Tensor) else torch.from_numpy(np.stack(signals))
        yield list(range(len(batch))), frontend.prepare(batch.to(device, non_blocking=True), settings.stft_padding)
        return
    if isinstance(signals, torch.Tensor) and frontend.input_kind == "waveform":  # one length: one batch
        yield list(range(len(signals))), frontend.prepare(signals.to(device), settings.stft_padding)
        return
    tensors = [torch.as_tensor(s).to(device) for s in signals]
    if frontend.input_kind == "spectrogram":
        specs = [fit_frames(frontend.prepare(t[None], settings.stft_padding)[0], frontend.input_shape[0], settings.fit) for t in tensors]
        yield list(range(len(specs))), torch.stack(specs)
        return
    for i, t in enumerate(tensors):
        yield [i], frontend.prepare(t[None], settings.stft_padding)
