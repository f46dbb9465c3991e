"""A run's parts, built from its config: the dataset, the front-end and the classifier."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..classifiers.kinds import ESTIMATOR_KEYS
from ..config import build
from ..datasets import Dataset
from ..frontends import FrontEnd


def build_dataset(cfg: DictConfig) -> Dataset:
    return build(cfg.dataset)


def build_frontend(cfg: DictConfig) -> FrontEnd:
    """The front-end of ``cfg.frontend`` at ``cfg.feature_size``, its weights drawn from ``cfg.seed``."""
    return build(cfg.frontend.net).init_weights(cfg.seed)


def build_estimator(classifier: DictConfig, seed: int, kind: str = "multiclass", device: torch.device | None = None):
    """The bare estimator of the ``classifier`` config group for a task ``kind``, seeded
    (validate.py has refused a classifier without one for the kind); on ``device`` where given
    and the estimator takes one (settings.load hands the run's device, resolved once)."""
    node = classifier[ESTIMATOR_KEYS[kind]]
    on = {"device": str(device)} if device is not None and "device" in node else {}
    return build(node, random_state=seed, **on)


def build_classifier(classifier: DictConfig, seed: int, kind: str = "multiclass", device: torch.device | None = None) -> Pipeline:
    """A fresh, unfitted pipeline: standardization where ``classifier.standardize``, then the estimator."""
    steps = [StandardScaler()] if classifier.standardize else []
    return make_pipeline(*steps, build_estimator(classifier, seed, kind, device))


def applicable(cfg: DictConfig, kind: str = "multiclass") -> list[str]:
    """The classifier's hyper-parameters that mean something for this run: gamma only for an
    rbf kernel (the classifier's search_conditions say which depend on which), none of those
    its ``ignores`` lists for the task ``kind`` (epsilon only for regression)."""
    conditions = cfg.classifier.get("search_conditions") or {}
    ignored = set((cfg.classifier.get("ignores") or {}).get(kind, []))
    keys = []
    for key in cfg.classifier:
        needs = conditions.get(f"classifier.{key}", {})
        if key not in ignored and all(str(OmegaConf.select(cfg, k)) == str(v) for k, v in needs.items()):
            keys.append(key)
    return keys
