"""The three task kinds as the estimators receive them, and what they share.

- ``multiclass``: ``y`` a 1-D array of labels (strings); ``predict`` returns labels.
- ``multilabel``: ``y`` an (n, n_tags) matrix of 0/1; ``decision_function`` returns (n, n_tags)
  real-valued scores (average precision and ROC-AUC are computed from them), ``predict`` 0/1.
- ``regression``: ``y`` 1-D float targets; ``predict`` returns floats in the targets' units.

Each classifier YAML names one estimator per kind it supports (``ESTIMATOR_KEYS``), lists under
``ignores`` the keys of its group that have no meaning for a kind (to refuse when a user sets them
with that kind, and to leave out of that kind's search), and under ``kind_search_space`` the
entries a kind's search adds to ``search_space``. Every estimator class says its kind in the
class attribute ``kind``.
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.metrics import average_precision_score

# the node of a classifier YAML that builds the estimator of each kind
ESTIMATOR_KEYS = {"multiclass": "estimator", "multilabel": "multilabel_estimator", "regression": "regression_estimator"}


class TaggerMixin:
    """A multi-label estimator: y is an (n, n_tags) matrix of 0/1, as scikit-learn's tags say."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        return tags


def check_tags(Y, name: str = "y") -> np.ndarray:
    """An (n, n_tags) matrix of 0/1 (any numeric or boolean dtype), as uint8."""
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] < 1:
        raise ValueError(f"{name} must be an (n_samples, n_tags) matrix of 0/1 for a multilabel estimator; got shape {Y.shape}")
    if Y.dtype.kind not in "biuf" or not np.isin(Y, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1 (tag absent / present) for a multilabel estimator")
    return Y.astype(np.uint8)


def check_targets(y, name: str = "y") -> np.ndarray:
    """1-D finite float targets, as float64."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D targets for a regression estimator; got shape {y.shape}")
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers for a regression estimator") from None
    if not np.isfinite(y).all():
        raise ValueError(f"{name} must be finite numbers for a regression estimator (NaN or infinity found)")
    return y


def standardizer(y: np.ndarray) -> tuple[float, float]:
    """Mean and scale of targets (scale 1 where they are constant)."""
    mean, std = float(np.mean(y)), float(np.std(y))
    return mean, std if std > 0 else 1.0


def constant_tags(Y: np.ndarray) -> np.ndarray:
    """Which tags take one value only in ``Y``'s rows (no positive, or no negative): a one-vs-rest
    model has nothing to learn for them and scores them with a constant."""
    positives = Y.sum(axis=0)
    return (positives == 0) | (positives == Y.shape[0])


def tag_average_precision(Y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each tag's average precision; NaN for a tag with no positive row (it has none)."""
    Y = np.asarray(Y)
    present = Y.sum(axis=0) > 0
    ap = np.full(Y.shape[1], np.nan)
    if present.any():
        ap[present] = average_precision_score(Y[:, present], scores[:, present], average=None)
    return ap


def macro_average_precision(Y: np.ndarray, scores: np.ndarray) -> float:
    """Macro average precision over the tags that have a positive row (the others are left out);
    NaN where none has."""
    ap = tag_average_precision(Y, scores)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def takes_eval_set(estimator) -> bool:
    """Whether ``estimator.fit`` (a pipeline's last step) accepts ``eval_set=(X_val, y_val)``."""
    last = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return "eval_set" in inspect.signature(last.fit).parameters


def fit_with_eval_set(model, X, y, eval_set=None):
    """Fit ``model`` (an estimator, or a pipeline whose last step is one) on (X, y); where its
    last step takes an ``eval_set`` and one is given, the validation rows pass through the
    pipeline's earlier steps (the standardization fitted on X) before reaching it. A pipeline
    does not transform fit parameters itself: this is what lets early stopping see validation
    rows in the same units as the training rows."""
    if eval_set is None or not takes_eval_set(model):
        return model.fit(X, y)
    X_val, y_val = eval_set
    if not hasattr(model, "steps"):
        return model.fit(X, y, eval_set=(X_val, y_val))
    head, last = model[:-1], model.steps[-1][1]
    if len(head):
        X = head.fit_transform(X, y)
        X_val = head.transform(X_val)
    last.fit(X, y, eval_set=(X_val, y_val))
    return model
