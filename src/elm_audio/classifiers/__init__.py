"""Classifiers scored on the feature vectors: scikit-learn estimators, one class per task kind
(``kinds.py``: multiclass labels, multilabel 0/1 tag matrices, regression targets)."""

from .elm import ELMClassifier, ELMRegressor, ELMTagger
from .kinds import ESTIMATOR_KEYS, fit_with_eval_set, takes_eval_set
from .knn import KNNProbeClassifier, KNNProbeRegressor, KNNProbeTagger
from .linear import LinearProbeClassifier, LinearProbeRegressor, LinearProbeTagger
from .mlp import MLPProbeClassifier, MLPProbeRegressor, MLPProbeTagger
from .svm import KernelSVC, KernelSVCTagger, KernelSVR

__all__ = [
    "ESTIMATOR_KEYS",
    "ELMClassifier",
    "ELMRegressor",
    "ELMTagger",
    "KNNProbeClassifier",
    "KNNProbeRegressor",
    "KNNProbeTagger",
    "KernelSVC",
    "KernelSVCTagger",
    "KernelSVR",
    "LinearProbeClassifier",
    "LinearProbeRegressor",
    "LinearProbeTagger",
    "MLPProbeClassifier",
    "MLPProbeRegressor",
    "MLPProbeTagger",
    "fit_with_eval_set",
    "takes_eval_set",
]
