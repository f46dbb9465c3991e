"""What a run will do, settled before it logs anything: the checked config, the dataset's
clips and protocol, the front-end, and the key of the features it needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .cache import cache_key
from .components import build_dataset, build_frontend
from .datasets import ClipIndex, Dataset
from .datasets.index import Survey
from .frontends import FrontEnd
from .frontends.profile import profile
from .protocols import Split, make_splits
from .validate import validate


@dataclass
class Plan:
    dataset: Dataset
    survey: Survey
    index: ClipIndex
    splits: list[Split]
    frontend: FrontEnd
    profile: dict[str, Any]
    key: str


def make_plan(cfg: DictConfig) -> Plan:
    """Validate every key, list the clips (a copy missing files the protocol needs stops here,
    with the data check's report), build the front-end and compute the features' cache key."""
    validate(cfg)
    dataset = build_dataset(cfg)
    survey = dataset.survey(cfg.protocol.mode)
    index = dataset.to_index(survey)
    splits = make_splits(index, cfg.protocol.mode)
    frontend = build_frontend(cfg)
    return Plan(dataset, survey, index, splits, frontend, profile(frontend), features_key(cfg, index))


def features_key(cfg: DictConfig, index: ClipIndex) -> str:
    """Everything that determines the feature matrix: the clips (path and size), how audio
    becomes the input, the front-end, its seed and its arithmetic."""
    return cache_key(
        {
            "clips": [(c.clip_id, c.path, file_size(c.path)) for c in index.clips],
            "audio": OmegaConf.to_container(cfg.audio, resolve=True),
            "frontend": OmegaConf.to_container(cfg.frontend.net, resolve=True),
            "seed": int(cfg.seed),
            "precision": str(cfg.precision),
        }
    )


def file_size(path: str) -> int:
    """A clip file's size in bytes, -1 where it cannot be read (it enters keys and digests)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


@dataclass(frozen=True)
class ProbeSettings:
    """What a random-weight run measures beside its classifier (the config's ``probe`` keys)."""

    knn_k: int = 10
    proxy_batch: int = 8


def probe_settings(cfg: DictConfig) -> ProbeSettings:
    return ProbeSettings(int(cfg.probe.knn_k), int(cfg.probe.proxy_batch))
