"""Every front-end as a HEAR 2021 module (https://hearbenchmark.com/hear-api.html).

``load_model`` returns a torch module holding one of elm_audio's random-weight front-ends
(or the MFCC baseline) and the API's attributes; ``get_scene_embeddings`` and
``get_timestamp_embeddings`` compute from the same definition as a run does:

- Audio at ``sample_rate`` is resampled to the method's 12 kHz inside the module, in torch, on
  the audio's device (``elm_audio.sound.resample``).
- Scene embedding: the run's feature vector of the whole sound (the means of the feature maps
  over all their positions). A sound no longer than the front-end's input is fitted as a run
  fits it (repeated until long enough, then cropped), so its vector is a run's vector. A longer
  sound is cut into consecutive windows of the input's length (the last one ending with the
  sound, overlapping the one before), and each window's means count by the new audio it covers:
  memory stays that of one window whatever the sound's length.
- Timestamp embeddings: every ``hop_ms`` from 0 to the sound's end, the same maps' means over
  ``window_ms`` centred on the timestamp (at least the one position holding it), each map's
  positions taken to span the window's audio evenly. Same values and size as the scene vector.

``model_file_path``: empty (weights drawn from ``seed``), a YAML file of the options, or a file
written by ``save_weights`` (a state dict with the options that built it; a bare state dict
takes the options given here). Its SHA-256 is in the model's ``description``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import OmegaConf
from torch import nn

from .config import CONFIG_DIR, build, native_frontends, shown
from .frontends import FrontEnd
from .frontends.profile import profile
from .sound.decode import SAMPLE_RATE
from .sound.resample import Resampler

HEAR_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
DEFAULTS: dict[str, Any] = {
    "frontend": "vgg",
    "feature_size": "large",
    "seed": 0,
    "sample_rate": 16000,
    "hop_ms": 40.0,
    "window_ms": 80.0,
    "batch_size": 4,
}


def build_named_frontend(name: str, feature_size: str, seed: int) -> FrontEnd:
    """A front-end from its YAML in conf/frontend/, without Hydra's global state (this module
    may be loaded inside a Hydra app: ``frontend=hear frontend.module=elm_audio.hear``)."""
    names = native_frontends()
    if name not in names:
        raise ValueError(f"frontend={shown(name)} is not one of {', '.join(names)}")
    if feature_size not in ("small", "large"):
        raise ValueError(f"feature_size={shown(feature_size)} is not one of small, large")
    node = OmegaConf.create({"feature_size": {"name": feature_size}, "frontend": OmegaConf.load(CONFIG_DIR / "frontend" / f"{name}.yaml")})
    return build(node.frontend.net).init_weights(int(seed))


class HearModel(nn.Module):
    """A front-end with the HEAR API's attributes, and how it turns sounds into embeddings."""

    def __init__(
        self,
        frontend: FrontEnd,
        options: dict[str, Any],
        description: str,
    ):
        super().__init__()
        if options["sample_rate"] not in (*HEAR_SAMPLE_RATES, SAMPLE_RATE):
            raise ValueError(f"sample_rate={options['sample_rate']} is not one of {HEAR_SAMPLE_RATES} (or {SAMPLE_RATE})")
        self.frontend = frontend.eval()
        self.options = dict(options)
        self.sample_rate = int(options["sample_rate"])
        self.hop_ms = float(options["hop_ms"])
        self.window_ms = float(options["window_ms"])
        if not 0 < self.hop_ms <= 50:
            raise ValueError(f"hop_ms={self.hop_ms} must be above 0 and at most 50 (HEAR's tolerance)")
        self.batch_size = int(options["batch_size"])
        self.resampler = Resampler(self.sample_rate, SAMPLE_RATE)
        size = int(profile(frontend)["feature_dim"])
        self.scene_embedding_size = size
        self.timestamp_embedding_size = size
        self.description = description

    def windows(self, n_samples: int) -> list[tuple[int, int, int]]:
        """(start, first new sample, end of new samples) of each input-length window of a
        12 kHz sound; one window (start 0) when the sound fits in one input."""
        size = self.frontend.input_samples
        if n_samples <= size:
            return [(0, 0, n_samples)]
        count = -(-n_samples // size)
        return [(min(i * size, n_samples - size), i * size, min((i + 1) * size, n_samples)) for i in range(count)]

    def window_input(self, audio: torch.Tensor, start: int) -> torch.Tensor:
        """The front-end's input of one window: its samples, repeated to the input's length
        where the sound is shorter (audio.fit=crop_or_repeat, as a run does)."""
        size = self.frontend.input_samples
        part = audio[:, start : start + size]
        if part.shape[1] < size:
            part = part.repeat(1, -(-size // part.shape[1]))[:, :size]
        return self.frontend.prepare(part)

    def to_method_rate(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.ndim != 2:
            raise ValueError(f"audio must be (n_sounds, n_samples), got shape {tuple(audio.shape)}")
        if audio.shape[1] == 0:
            raise ValueError("audio holds no samples")
        return self.resampler(audio.float())

    def timestamps_ms(self, n_samples: int) -> torch.Tensor:
        """Every hop from 0 to the sound's end (a sound shorter than a hop has one, at 0)."""
        duration_ms = 1000.0 * n_samples / self.sample_rate
        count = int(np.floor(duration_ms / self.hop_ms + 1e-9)) + 1
        return torch.arange(count, dtype=torch.float64) * self.hop_ms

    @torch.inference_mode()
    def scene(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.to_method_rate(audio)
        device = next(self.frontend.parameters(), x).device
        out = []
        for sounds in x.split(self.batch_size):
            sounds = sounds.to(device)
            total, weight = None, 0
            for start, new_from, new_to in self.windows(sounds.shape[1]):
                vector = self.frontend.features(self.window_input(sounds, start)).double() * (new_to - new_from)
                total = vector if total is None else total + vector
                weight += new_to - new_from
            out.append((total / weight).float())
        return torch.cat(out).to(audio.device)

    @torch.inference_mode()
    def timestamp(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        times = self.timestamps_ms(audio.shape[1])
        x = self.to_method_rate(audio)
        device = next(self.frontend.parameters(), x).device
        size = self.frontend.input_samples
        window_seconds = size / SAMPLE_RATE
        seconds = times / 1000.0
        out = []
        for sounds in x.split(self.batch_size):
            sounds = sounds.to(device)
            rows = torch.empty(len(sounds), len(times), self.timestamp_embedding_size, device=device)
            for start, new_from, new_to in self.windows(sounds.shape[1]):
                sample = seconds * SAMPLE_RATE
                mine = (sample >= new_from) & ((sample < new_to) | (new_to == sounds.shape[1]))
                if not mine.any():
                    continue
                local = seconds[mine] - start / SAMPLE_RATE
                parts: list[torch.Tensor] = []

                def pool(name: str, fmap: torch.Tensor, reduction: str) -> None:
                    parts.append(window_means(fmap, local, window_seconds, self.window_ms / 1000.0, reduction))

                with self.frontend.maps(pool):
                    self.frontend.features(self.window_input(sounds, start))
                rows[:, mine.to(device)] = torch.cat(parts, dim=2).float()
            out.append(rows)
        stamps = times.float().to(audio.device).expand(len(audio), -1).contiguous()
        return (out[0] if len(out) == 1 else torch.cat(out)).to(audio.device), stamps


def window_means(fmap: torch.Tensor, centres: torch.Tensor, span: float, width: float, reduction: str) -> torch.Tensor:
    """(batch, channels, positions, ...) map whose positions evenly cover ``span`` seconds ->
    (batch, len(centres), values): the map's statistics over ``width`` seconds around each
    centre (at least the one position holding it), as the feature vector reduces the whole map."""
    m = fmap.flatten(3).mean(dim=-1) if fmap.ndim > 3 else fmap  # (batch, channels, positions)
    m = m.double()
    n = m.shape[-1]
    scale = n / span
    lo = torch.floor((centres - width / 2) * scale).long().clamp(0, n - 1)
    hi = torch.maximum(torch.ceil((centres + width / 2) * scale).long().clamp(max=n), lo + 1)
    lo, hi = lo.to(m.device), hi.to(m.device)
    zero = m.new_zeros(m.shape[:-1] + (1,))
    sums = torch.cat([zero, m.cumsum(-1)], dim=-1)
    count = (hi - lo).to(m.dtype)
    mean = (sums[..., hi] - sums[..., lo]) / count  # (batch, channels, centres)
    if reduction == "mean_std":
        squares = torch.cat([zero, (m * m).cumsum(-1)], dim=-1)
        var = ((squares[..., hi] - squares[..., lo]) / count - mean * mean).clamp_min(0)
        values = torch.cat([mean, var.sqrt()], dim=1)
    elif reduction == "per_layer":
        values = torch.nn.functional.pad(mean.mean(dim=1, keepdim=True), (0, 0, 0, mean.shape[1] - 1))
    else:
        values = mean
    return values.transpose(1, 2)


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def save_weights(path: str | Path, **options: Any) -> str:
    """Write a front-end's random weights (drawn from ``options``, as ``load_model`` takes them)
    with the options that built it; returns the file's SHA-256."""
    model = load_model("", **options)
    torch.save({"elm_audio_options": model.options, "state_dict": model.frontend.state_dict()}, path)
    return file_sha256(path)


def load_model(model_file_path: str = "", **kwargs: Any) -> HearModel:
    """A HEAR model. ``kwargs`` (hear-eval-kit's ``--model-options``): ``frontend`` (any of
    conf/frontend/ but the imported ones; default vgg), ``feature_size`` (small or large, default
    large), ``seed`` (0), ``sample_rate`` (16000; any of HEAR's rates, or 12000 to skip
    resampling), ``hop_ms`` (40), ``window_ms`` (80), ``batch_size`` (sounds computed together, 4)."""
    unknown = set(kwargs) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    options = {**DEFAULTS}
    state = None
    sha = None
    if model_file_path:
        path = Path(model_file_path)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        sha = file_sha256(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            given = yaml.safe_load(path.read_text()) or {}
            if not isinstance(given, dict):
                raise ValueError(f"{path}: expected a mapping of options, e.g. 'frontend: temporal'")
            unknown = set(given) - set(DEFAULTS)
            if unknown:
                raise ValueError(f"{path}: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
            options.update(given)
        else:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(saved, dict) and "state_dict" in saved:
                options.update(saved.get("elm_audio_options", {}))
                saved = saved["state_dict"]
            state = saved
    options.update(kwargs)
    frontend = build_named_frontend(str(options["frontend"]), str(options["feature_size"]), int(options["seed"]))
    if state is not None:
        frontend.load_state_dict(state)
    weights = f"weights from {Path(model_file_path).name} (sha256 {sha})" if state is not None else f"weights drawn from seed {options['seed']}"
    if sha is not None and state is None:
        weights += f"; options from {Path(model_file_path).name} (sha256 {sha})"
    description = f"elm_audio {options['frontend']} ({options['feature_size']}), random weights: {weights}"
    return HearModel(frontend, options, description)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, n_samples) at ``model.sample_rate`` -> float32 (n_sounds, scene_embedding_size)."""
    return model.scene(audio)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_sounds, n_samples) -> float32 (n_sounds, T, timestamp_embedding_size) and the
    timestamps in milliseconds (n_sounds, T), every ``model.hop_ms`` from 0."""
    return model.timestamp(audio)
