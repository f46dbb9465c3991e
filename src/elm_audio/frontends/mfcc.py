"""The MFCC baseline as a front-end, so that it runs through the same pipeline."""

from __future__ import annotations

import torch

from ..dsp import MFCCStatistics
from .base import FrontEnd, LayerInfo


class MFCC(FrontEnd):
    """120 values per clip whatever the feature size: statistics of 20 MFCCs and their deltas."""

    input_kind = "waveform"

    def __init__(self, n_mfcc: int = 20):
        super().__init__()
        self.stats = MFCCStatistics(n_mfcc=n_mfcc)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stats(x)
        if self._trace is not None:
            self._trace.append(LayerInfo("mfcc_statistics", (out.shape[1],), int(out.shape[1])))
        return out

