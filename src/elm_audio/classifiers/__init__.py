"""Classifiers scored on the feature vectors: scikit-learn estimators."""

from .elm import ELMClassifier
from .svm import KernelSVC

__all__ = ["ELMClassifier", "KernelSVC"]
