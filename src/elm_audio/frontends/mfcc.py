"""The MFCC baseline as a front-end, so that it runs through the same pipeline."""

from __future__ import annotations

import torch

from ..sound.dsp import MFCCStatistics
from .base import FrontEnd, LayerInfo


class MFCC(FrontEnd):
    """120 values per clip whatever the feature size: statistics of 20 MFCCs and their deltas."""

    input_kind = "waveform"
    whole_clip_statistics = True
    profile_clips = 1  # the STFT of an empty batch fails in MKL's FFT

    def __init__(self, n_mfcc: int = 20):
        super().__init__()
        self.stats = MFCCStatistics(n_mfcc=n_mfcc)

    def prepare(self, waveform: torch.Tensor, stft_padding: str = "zeros") -> torch.Tensor:
        """The waveform padded for centred STFT frames; ``features`` computes the rest."""
        return self.stats.mel.pad(waveform, stft_padding)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self._on_map is not None:  # the maps the statistics are taken over, in their order
            mfcc = self.stats.mfcc(x, padding=None)
            d1 = mfcc.diff(dim=-1)
            for name, m in (("mfcc", mfcc), ("delta", d1), ("delta2", d1.diff(dim=-1))):
                self._on_map(name, m.to(x.dtype), "mean_std")
        out = self.stats(x, padding=None)
        if self._trace is not None:
            self._trace.append(LayerInfo("mfcc_statistics", (out.shape[1],), int(out.shape[1])))
        return out

