"""The config read once: ``load(cfg)`` checks every key (validate.py), resolves the device, the
precision the run computes in, the cache folder and extraction's batch size and decoding
threads (``auto``: extraction/defaults.py), builds the dataset, and hands back a frozen
``Settings`` whose parts the stages take (lightning-hydra-template's way: instantiate at the top,
hand objects down). Nothing below the command-line entries reads the ``DictConfig`` but this
package (tests/test_structure.py checks)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from sklearn.pipeline import Pipeline

from ..config import build
from ..datasets import Dataset
from ..datasets.index import TASK_KINDS
from ..devices import resolve_device
from ..extraction import defaults as extraction_defaults
from ..extraction.extract import ExtractSettings
from ..extraction.inputs import InputSettings
from ..extraction.precision import effective_precision
from ..frontends import FrontEnd
from ..stores.tracking import RunNames
from .components import applicable, build_classifier, build_dataset, build_frontend
from .validate import imported_frontend, validate


@dataclass(frozen=True)
class Protocol:
    """Which rows train, validate and test, and how folds combine (the config's ``protocol``)."""

    mode: str = "honest"
    fold_weighting: str = "equal"


@dataclass(frozen=True)
class ProbeSettings:
    """What a random-weight run measures beside its classifier (the config's ``probe`` keys)."""

    knn_k: int = 10
    proxy_batch: int = 8


@dataclass(frozen=True)
class Recipe:
    """The training recipe: every setting is a key of conf/weights/trained.yaml."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16
    max_epochs: int = 30
    patience: int = 5  # epochs without a better validation accuracy before stopping


@dataclass(frozen=True)
class Sweep:
    """What the sweeper set for a trial (the config's ``sweep``); all None outside a sweep."""

    trial: int | None = None
    study: str | None = None
    parent_run_id: str | None = None
    pruner: dict[str, Any] | None = None  # the sweeper's hydra.sweeper.pruner node, plain
    storage: str | None = None

    def node(self) -> dict[str, Any]:
        """The keys as sweeps.pruning.fold_reporter takes them."""
        return {"trial": self.trial, "study": self.study, "parent_run_id": self.parent_run_id,
                "pruner": self.pruner, "storage": self.storage}  # fmt: skip


@dataclass(frozen=True)
class Classifier:
    """The classifier group's choice: its name, its keys (plain, resolved), which of them mean
    something for each task kind, and ``build(kind)``: a fresh, unfitted, seeded pipeline."""

    name: str
    keys: Mapping[str, Any]
    applicable: Mapping[str, tuple[str, ...]]  # task kind -> the keys that apply (components.applicable)
    build: Callable[[str], Pipeline]

    def values(self, kind: str, among: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The applicable keys' values for ``kind`` (only those in ``among`` where given), in the group's order."""
        return {k: self.keys[k] for k in self.applicable[kind] if among is None or k in among}


@dataclass(frozen=True)
class Settings:
    """Everything a run reads from its config, read once."""

    seed: int
    device: torch.device  # resolved: auto is cuda or cpu here
    precision: str  # the one the run computes in (bf16 on a CPU without bf16 units is fp32)
    cache_dir: Path  # expanded
    tracking_uri: str | None
    names: RunNames  # dataset, front-end, size, classifier, weights, protocol, preset: tags and run names
    protocol: Protocol
    extraction: ExtractSettings  # its precision is ``precision``
    probe: ProbeSettings
    recipe: Recipe | None  # weights=trained only
    sweep: Sweep
    classifier: Classifier
    dataset: Dataset  # built (constructed only: the survey is the plan's)
    build_frontend: Callable[[], FrontEnd]  # a fresh front-end, its weights drawn from the seed
    audio: Mapping[str, Any]  # the ``audio`` node, plain: the cache key's
    frontend_net: Mapping[str, Any]  # the ``frontend.net`` node, plain: the cache key's
    weights: Mapping[str, Any]  # the ``weights`` node, plain: the training key's
    config: Mapping[str, Any]  # the whole config, resolved, plain (params, config.yaml)
    config_as_written: Mapping[str, Any]  # unresolved: what record keeps of values read from the environment

    @property
    def trained(self) -> bool:
        return self.names.weights == "trained"


def plain(node: Any, resolve: bool = True) -> Any:
    return OmegaConf.to_container(node, resolve=resolve) if OmegaConf.is_config(node) else node


def run_names(cfg: DictConfig) -> RunNames:
    """What a run or sweep compares, as its tags and names say it."""
    return RunNames(
        dataset=str(cfg.dataset.name),
        frontend=str(cfg.frontend.name),
        feature_size=str(cfg.feature_size.name),
        classifier=str(cfg.classifier.name),
        weights=str(cfg.weights.name),
        mode=str(cfg.protocol.mode),
        experiment=cfg.experiment_name,
        seed=cfg.seed,
    )


def dataset_kind(cfg: DictConfig) -> str:
    """The task kind of a sweep's dataset, for the classifier's ``kind_search_space``: the
    dataset's ``kind`` key where it has one (synth), else from its index (a HEAR task or a table
    says its kind in its files; reading them reads no audio)."""
    if cfg.dataset.get("kind"):
        return str(cfg.dataset.kind)
    if not any((cfg.classifier.get("kind_search_space") or {}).values()):
        return "multiclass"  # nothing depends on it
    return build_dataset(cfg).index(str(cfg.protocol.mode)).kind


def kind_entries(cfg: DictConfig) -> dict[str, str]:
    """What the classifier's search adds for the dataset's kind (svm: epsilon for regression)."""
    extra = (cfg.classifier.get("kind_search_space") or {}).get(dataset_kind(cfg)) or {}
    return plain(extra) if extra else {}


def frontend_shapes(cfg: DictConfig) -> FrontEnd | None:
    """The front-end built on the meta device (its shapes: no memory, no weights drawn), for
    auto's estimate of its memory; None for an imported one (the run loads its model)."""
    if imported_frontend(cfg):
        return None
    with torch.device("meta"):
        return build(cfg.frontend.net)


def resolved_config(cfg: DictConfig, batch: int, workers: int) -> dict[str, Any]:
    """The whole config, resolved, plain, with extract.batch_size and extract.num_workers as
    the run uses them (auto resolved too): what the run's params and config.yaml record."""
    config = plain(cfg)  # a fresh container: changed here alone
    config["extract"].update(batch_size=batch, num_workers=workers)
    return config


def load(cfg: DictConfig) -> Settings:
    """Check every key (a ConfigError names the first that cannot work), then read them once."""
    validate(cfg)
    device = resolve_device(cfg.device)
    precision = effective_precision(device, str(cfg.precision))
    seed = int(cfg.seed)
    dataset = build_dataset(cfg)
    classifier_node = cfg.classifier
    batch_size, num_workers = extraction_defaults.resolve(
        cfg.extract.batch_size,
        cfg.extract.num_workers,
        device,
        precision,
        functools.partial(frontend_shapes, cfg),
    )
    extraction = ExtractSettings(
        batch_size=batch_size,
        num_workers=num_workers,
        on_bad_clip=dataset.on_bad_clip,
        progress=cfg.extract.progress,
        precision=precision,
        inputs=InputSettings(cfg.audio.fit, cfg.audio.fit_stage, cfg.audio.stft_padding, cfg.audio.min_fraction),
        label=f"{cfg.frontend.name} ({cfg.feature_size.name})",
    )
    trained = cfg.weights.name == "trained"
    return Settings(
        seed=seed,
        device=device,
        precision=precision,
        cache_dir=Path(str(cfg.cache.dir)).expanduser(),
        tracking_uri=cfg.tracking.uri,
        names=run_names(cfg),
        protocol=Protocol(cfg.protocol.mode, cfg.protocol.fold_weighting),
        extraction=extraction,
        probe=ProbeSettings(int(cfg.probe.knn_k), int(cfg.probe.proxy_batch)),
        recipe=Recipe(**{k: cfg.weights[k] for k in Recipe.__dataclass_fields__}) if trained else None,
        sweep=Sweep(cfg.sweep.trial, cfg.sweep.study, cfg.sweep.parent_run_id, plain(cfg.sweep.pruner), cfg.sweep.storage),
        classifier=Classifier(
            name=str(cfg.classifier.name),
            keys=plain(classifier_node),
            applicable={kind: tuple(applicable(cfg, kind)) for kind in TASK_KINDS},
            build=functools.partial(build_classifier, classifier_node, seed, device=device),
        ),
        dataset=dataset,
        build_frontend=functools.partial(build_frontend, cfg),
        audio=plain(cfg.audio),
        frontend_net=plain(cfg.frontend.net),
        weights=plain(cfg.weights),
        config=resolved_config(cfg, batch_size, num_workers),
        config_as_written=plain(cfg, resolve=False),
    )
