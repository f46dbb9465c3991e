"""Log-mel spectrograms and MFCCs in torch, batched, on any device.

Both reproduce librosa (``melspectrogram`` + ``power_to_db``, and ``feature.mfcc``) with the
settings of docs/method.md; librosa also supplies the Slaney mel filterbank. The STFT and the
mel projection run in float64, as librosa's float64 window makes them: in float32, leakage
from loud bins into bins near the 80 dB floor is off by more than 1e-3 dB. It costs little
next to the CNNs; the outputs are cast back to the input's dtype.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from .decode import SAMPLE_RATE


def power_to_db(power: torch.Tensor, amin: float = 1e-10, top_db: float | None = 80.0) -> torch.Tensor:
    """10 log10(power) with reference 1.0, floored at ``top_db`` below each clip's maximum."""
    db = 10.0 * torch.log10(power.clamp_min(amin))
    if top_db is not None:
        peak = db.amax(dim=tuple(range(1, db.dim())), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


STFT_PADDINGS = ("zeros", "reflect")
_PAD_MODES = {"zeros": "constant", "reflect": "reflect"}


class MelSpectrogram(nn.Module):
    """Power mel spectrogram of a batch of waveforms: (batch, samples) -> (batch, n_mels, frames),
    in float64. Frames are centred: the signal is padded by n_fft/2 on each side, with zeros
    (librosa 0.10 and later) or by reflection (librosa 0.9 and earlier, the original code's).
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 512,
        hop_length: int = 256,
        n_mels: int = 96,
        fmin: float = 0.0,
        fmax: float | None = 6000.0,
    ):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        self.register_buffer("filterbank", torch.from_numpy(fb).double(), persistent=False)
        window = scipy.signal.get_window("hann", n_fft, fftbins=True)
        self.register_buffer("window", torch.from_numpy(window), persistent=False)

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def pad(self, waveform: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
        """The signal, padded by n_fft/2 on each side so that frames are centred."""
        half = self.n_fft // 2
        return F.pad(waveform.unsqueeze(1), (half, half), mode=_PAD_MODES[padding]).squeeze(1)

    def forward(self, waveform: torch.Tensor, padding: str | None = "zeros") -> torch.Tensor:
        """``padding=None``: the caller has padded the signal already (``pad``)."""
        padded = waveform.double() if padding is None else self.pad(waveform.double(), padding)
        spec = torch.stft(padded, self.n_fft, self.hop_length, window=self.window, center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()
        return torch.matmul(self.filterbank, power)


class LogMel(nn.Module):
    """The spectrogram front-ends' input: log-mel, (batch, samples) -> (batch, frames, n_mels)."""

    def __init__(self, n_mels: int = 96, **mel_kwargs):
        super().__init__()
        self.mel = MelSpectrogram(n_mels=n_mels, **mel_kwargs)

    def forward(self, waveform: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
        return power_to_db(self.mel(waveform, padding)).to(waveform.dtype).transpose(1, 2)


class MFCCStatistics(nn.Module):
    """The MFCC baseline: 20 MFCCs, their first and second differences along time, and the
    mean and standard deviation of each over time: 120 values per clip.

    MFCCs follow librosa.feature.mfcc's defaults (n_fft 2048, hop 512, 128 mel bands up to
    Nyquist, dB with an 80 dB floor, orthonormal DCT-II).
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 20, n_mels: int = 128):
        super().__init__()
        self.mel = MelSpectrogram(sample_rate, n_fft=2048, hop_length=512, n_mels=n_mels, fmax=None)
        dct = scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]
        self.register_buffer("dct", torch.from_numpy(dct), persistent=False)

    def mfcc(self, waveform: torch.Tensor, padding: str | None = "zeros") -> torch.Tensor:
        """(batch, samples) -> (batch, n_mfcc, frames), in float64."""
        return torch.matmul(self.dct, power_to_db(self.mel(waveform, padding)))

    def forward(self, waveform: torch.Tensor, padding: str | None = "zeros") -> torch.Tensor:
        mfcc = self.mfcc(waveform, padding)
        d1 = mfcc.diff(dim=-1)
        d2 = d1.diff(dim=-1)
        stats = []
        for m in (mfcc, d1, d2):
            stats += [m.mean(dim=-1), m.std(dim=-1, correction=0)]
        return torch.cat(stats, dim=1).to(waveform.dtype)
