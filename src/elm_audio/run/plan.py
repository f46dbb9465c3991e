"""What a run will do, settled before it logs anything: the checked config, the dataset's
clips and protocol, the front-end, and the key of the features it needs."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..datasets import ClipIndex, Dataset
from ..datasets.index import Survey
from ..devices import resolve_device
from ..evaluation.protocols import Split, make_splits
from ..extraction.precision import effective_precision
from ..frontends import FrontEnd
from ..frontends.imported import Embeddings, Imported
from ..frontends.profile import profile
from ..settings.components import build_dataset, build_frontend
from ..settings.validate import fits_kind, validate
from ..stores.cache import cache_key
from ..stores.contents import Content, clip_contents


@dataclass
class Plan:
    dataset: Dataset
    survey: Survey
    index: ClipIndex
    splits: list[Split]
    frontend: FrontEnd
    profile: dict[str, Any]
    key: str
    contents: list[Content]  # each clip's path below the root, size and digest, in index order


def make_plan(cfg: DictConfig) -> Plan:
    """Validate every key, list the clips (a copy missing files the protocol needs stops here,
    with the data check's report), build the front-end and compute the features' cache key."""
    validate(cfg)
    dataset = build_dataset(cfg)
    survey = dataset.survey(cfg.protocol.mode)
    index = dataset.to_index(survey)
    fits_kind(cfg, dataset, index)
    splits = make_splits(index, cfg.protocol.mode)
    frontend = build_frontend(cfg)
    if isinstance(frontend, Embeddings):  # vectors computed elsewhere: one for every clip
        frontend.check_clips(index.clips)
    contents = clip_contents(survey.root, [c.path for c in index.clips], digests_dir(cfg))
    key = features_key(cfg, index, contents, frontend)
    return Plan(dataset, survey, index, splits, frontend, profiled(cfg, frontend), key, contents)


_PROFILES: dict[str, dict[str, Any]] = {}


def profiled(cfg: DictConfig, frontend: FrontEnd) -> dict[str, Any]:
    """The front-end's profile, computed once per process for each architecture and input (a
    sweep's trials share it)."""
    key = cache_key({"net": OmegaConf.to_container(cfg.frontend.net, resolve=True),
                     "audio": OmegaConf.to_container(cfg.audio, resolve=True)})  # fmt: skip
    if key not in _PROFILES:
        _PROFILES[key] = profile(frontend)
    return copy.deepcopy(_PROFILES[key])


def digests_dir(cfg: DictConfig) -> Path:
    """Where the clips' digests are remembered: beside the features they key."""
    return Path(str(cfg.cache.dir)).expanduser() / "digests"


def features_key(cfg: DictConfig, index: ClipIndex, contents: list[Content], frontend: FrontEnd | None = None) -> str:
    """Everything that determines the feature matrix (and the labels stored with it): the clips,
    by their path below the dataset's root and their bytes' digest, not where the dataset is
    mounted (servers mounting it at different paths share entries); how audio becomes the
    input; the front-end, its seed and the arithmetic it computes in (bf16 that computes in
    float32 on this CPU keys as fp32: the same features); for an imported front-end, also its
    package's version and its files' SHA-256."""
    return cache_key(
        {
            "clips": [(c.clip_id, c.label, x.path, x.size, x.sha256) for c, x in zip(index.clips, contents)],
            "audio": OmegaConf.to_container(cfg.audio, resolve=True),
            "frontend": OmegaConf.to_container(cfg.frontend.net, resolve=True),
            "seed": int(cfg.seed),
            "precision": effective_precision(resolve_device(cfg.device), str(cfg.precision)),
            **(frontend.identity() if isinstance(frontend, Imported) else {}),
        }
    )


@dataclass(frozen=True)
class ProbeSettings:
    """What a random-weight run measures beside its classifier (the config's ``probe`` keys)."""

    knn_k: int = 10
    proxy_batch: int = 8


def probe_settings(cfg: DictConfig) -> ProbeSettings:
    return ProbeSettings(int(cfg.probe.knn_k), int(cfg.probe.proxy_batch))
