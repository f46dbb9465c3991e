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
from .frontends.imported import Embeddings, Imported
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
    if isinstance(frontend, Embeddings):  # vectors computed elsewhere: one for every clip
        frontend.check_clips(index.clips)
    return Plan(dataset, survey, index, splits, frontend, profile(frontend), features_key(cfg, index, frontend))


def features_key(cfg: DictConfig, index: ClipIndex, frontend: FrontEnd | None = None) -> str:
    """Everything that determines the feature matrix: the clips (path and size), how audio
    becomes the input, the front-end, its seed and its arithmetic; for an imported front-end,
    also its package's version and its files' SHA-256."""
    return cache_key(
        {
            "clips": [(c.clip_id, c.path, file_size(c.path)) for c in index.clips],
            "audio": OmegaConf.to_container(cfg.audio, resolve=True),
            "frontend": OmegaConf.to_container(cfg.frontend.net, resolve=True),
            "seed": int(cfg.seed),
            "precision": str(cfg.precision),
            **(frontend.identity() if isinstance(frontend, Imported) else {}),
        }
    )


def file_size(path: str) -> int:
    """A clip file's size in bytes, -1 where it cannot be read (it enters keys and digests)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return -1
