"""Every front-end as an X-ARES audio encoder (github.com/jimbozhang/xares).

``ElmAudioEncoder()`` takes no arguments, as X-ARES builds it; environment variables choose
what it holds (read when it is built; unset ones leave the model file's options or the defaults):

- ``ELM_AUDIO_FRONTEND``: any front-end of conf/frontend/ but the imported ones (default vgg)
- ``ELM_AUDIO_FEATURE_SIZE``: small or large (default large)
- ``ELM_AUDIO_SEED``: the random weights' seed (default 0)
- ``ELM_AUDIO_MODEL_FILE``: optional, a weights or options file as ``elm_audio.hear`` takes it

``forward`` maps 16 kHz audio (batch, samples) to the HEAR module's timestamp embeddings,
(batch, frames, output_dim), one frame every ``hop_size_in_ms`` from the start.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from . import hear
from .config import shown

SAMPLING_RATE = 16000


class ElmAudioEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        options: dict = {"sample_rate": SAMPLING_RATE}
        for variable, option in (("ELM_AUDIO_FRONTEND", "frontend"), ("ELM_AUDIO_FEATURE_SIZE", "feature_size")):
            if variable in os.environ:
                options[option] = os.environ[variable]
        if "ELM_AUDIO_SEED" in os.environ:
            seed = os.environ["ELM_AUDIO_SEED"]
            if not seed.lstrip("-").isdigit():
                raise ValueError(f"ELM_AUDIO_SEED={shown(seed)} must be a whole number")
            options["seed"] = int(seed)
        # unset variables leave the model file's options (or the defaults) in place
        self.model = hear.load_model(os.environ.get("ELM_AUDIO_MODEL_FILE", ""), **options)
        self.sampling_rate = SAMPLING_RATE
        self.output_dim = self.model.timestamp_embedding_size
        self.hop_size_in_ms = self.model.hop_ms

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        embeddings, _ = hear.get_timestamp_embeddings(audio, self.model)
        return embeddings
