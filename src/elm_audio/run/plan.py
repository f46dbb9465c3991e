"""What a run will do, settled before it logs anything: the dataset's clips and protocol, the
front-end, and the key of the features it needs (the settings were checked and read by
settings.load)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets import ClipIndex, Dataset
from ..datasets.index import Survey
from ..evaluation.protocols import Split, make_splits
from ..frontends import FrontEnd
from ..frontends.imported import Embeddings, Imported
from ..frontends.profile import profile
from ..settings.settings import Settings
from ..settings.validate import fits_kind
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


def make_plan(settings: Settings) -> Plan:
    """List the clips (a copy missing files the protocol needs stops here, with the data
    check's report), build the front-end and compute the features' cache key."""
    dataset = settings.dataset
    survey = dataset.survey(settings.protocol.mode)
    index = dataset.to_index(survey)
    fits_kind(settings.names.dataset, settings.protocol.mode, settings.classifier.keys, settings.names.weights, dataset, index)
    splits = make_splits(index, settings.protocol.mode)
    frontend = settings.build_frontend()
    if isinstance(frontend, Embeddings):  # vectors computed elsewhere: one for every clip
        frontend.check_clips(index.clips)
    contents = clip_contents(survey.root, [c.path for c in index.clips], digests_dir(settings.cache_dir))
    key = features_key(settings, index, contents, frontend)
    return Plan(dataset, survey, index, splits, frontend, profiled(settings, frontend), key, contents)


_PROFILES: dict[str, dict[str, Any]] = {}


def profiled(settings: Settings, frontend: FrontEnd) -> dict[str, Any]:
    """The front-end's profile, computed once per process for each architecture and input (a
    sweep's trials share it)."""
    key = cache_key({"net": settings.frontend_net, "audio": settings.audio})
    if key not in _PROFILES:
        _PROFILES[key] = profile(frontend)
    return copy.deepcopy(_PROFILES[key])


def digests_dir(cache_dir: Path) -> Path:
    """Where the clips' digests are remembered: beside the features they key."""
    return cache_dir / "digests"


def features_key(settings: Settings, index: ClipIndex, contents: list[Content], frontend: FrontEnd | None = None) -> str:
    """Everything that determines the feature matrix (and the labels stored with it): the clips,
    by their path below the dataset's root and their bytes' digest, not where the dataset is
    mounted (servers mounting it at different paths share entries); how audio becomes the
    input; the front-end, its seed and the arithmetic it computes in (bf16 that computes in
    float32 on this CPU keys as fp32: the same features); for an imported front-end, also its
    package's version and its files' SHA-256."""
    return cache_key(
        {
            "clips": [(c.clip_id, c.label, x.path, x.size, x.sha256) for c, x in zip(index.clips, contents)],
            "audio": settings.audio,
            "frontend": settings.frontend_net,
            "seed": settings.seed,
            "precision": settings.precision,
            **(frontend.identity() if isinstance(frontend, Imported) else {}),
        }
    )
