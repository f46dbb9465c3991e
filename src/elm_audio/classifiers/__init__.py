"""Classifiers scored on the feature vectors, each behind optional standardization."""

from __future__ import annotations

from omegaconf import DictConfig
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..config import build
from .elm import ELMClassifier
from .svm import KernelSVC

__all__ = ["ELMClassifier", "KernelSVC", "build_classifier"]


def build_classifier(cfg: DictConfig, seed: int) -> Pipeline:
    """A fresh, unfitted pipeline from the ``classifier`` config group."""
    estimator = build(cfg.estimator, random_state=seed)
    steps = [StandardScaler()] if cfg.get("standardize", True) else []
    return make_pipeline(*steps, estimator)
