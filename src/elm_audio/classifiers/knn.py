"""The k-nearest-neighbour probe for every kind: the ``n_neighbors`` training rows nearest by
cosine, with as many neighbours as there are training rows where fewer than ``n_neighbors``.
Put it after a StandardScaler, as ``protocols.knn_probe`` does (cosine on standardized features).

- ``KNNProbeClassifier``: the majority of the neighbours' labels (a tie goes to the smallest
  class): the predictions of
  ``KNeighborsClassifier(n_neighbors=min(k, n_train), metric="cosine", algorithm="brute")``,
  what ``knn_probe`` has always computed; ``predict_proba`` the neighbours' counts over k.
- ``KNNProbeTagger``: each tag's score is the fraction of the neighbours that have it (the mean
  of their 0/1 tag vectors); ``predict`` 1 where more than half have it.
- ``KNNProbeRegressor``: the mean of the neighbours' targets.

The search is scikit-learn's brute force, done in torch on the CPU: the training rows are stored
L2-normalized at ``fit`` (an all-zero row stays zero, as ``sklearn.preprocessing.normalize``
leaves it, so its cosine distance to every row is 1), in the input's float dtype (float32 stays
float32, as scikit-learn computes it; other inputs become float64). ``kneighbors`` (and so
``predict``) normalizes the queries, in the training rows' dtype, and takes their similarities
to the training rows a chunk of queries at a time (a chunk's block at most ``CHUNK_BYTES``)
through ``products.linear``; ``topk`` keeps the k largest. The training rows are neither
normalized again nor copied on each call, as they are in scikit-learn's search. The neighbours
are scikit-learn's up to the order of rows at equal distance (scikit-learn's order among those
is arbitrary too) and the rounding of the products. ``n_jobs`` is accepted for compatibility
and unused: the search runs in torch's threads.
"""

from __future__ import annotations

from numbers import Integral
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..products import linear
from .kinds import TaggerMixin, check_tags, check_targets

# the most bytes one chunk of queries' similarities to the training rows may take
CHUNK_BYTES = 64 * 2**20


def unit_rows(X: np.ndarray) -> torch.Tensor:
    """X's rows divided by their L2 norms (an all-zero row left zero), in X's dtype."""
    # no copy unless X is read-only or not C-contiguous
    x = torch.from_numpy(np.require(X, requirements=["C", "W"]))
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    norms[norms == 0] = 1.0
    return x / norms


class _KNNBase(BaseEstimator):
    kind: str

    _parameter_constraints: ClassVar[dict] = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self, n_neighbors: int = 10, n_jobs: int | None = None, random_state=None
    ):
        self.n_neighbors = n_neighbors
        self.n_jobs = n_jobs  # not used: kept so that configurations setting it build
        self.random_state = random_state  # not used: the probe draws nothing

    def _fit_rows(self, X: np.ndarray) -> None:
        self._fit_X = unit_rows(X).numpy()
        self.n_samples_fit_ = len(X)

    def kneighbors(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices), each (n_queries, k): the k = min(n_neighbors, n_train) training
        rows nearest each row of X by cosine distance (1 - cosine similarity, in [0, 2]), nearest
        first, as ``KNeighborsMixin.kneighbors(X)`` returns them."""
        check_is_fitted(self, "_fit_X")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        fit_x = torch.from_numpy(self._fit_X)
        X = X.astype(self._fit_X.dtype, copy=False)
        k = min(self.n_neighbors, len(fit_x))
        chunk = max(1, CHUNK_BYTES // (len(fit_x) * fit_x.element_size()))
        distances = np.empty((len(X), k), dtype=self._fit_X.dtype)
        indices = np.empty((len(X), k), dtype=np.int64)
        for start in range(0, len(X), chunk):
            queries = unit_rows(X[start : start + chunk])
            # (n_train, chunk): the queries as the product's small operand, which oneDNN prefers
            similarity = linear(fit_x, queries)
            nearest = similarity.topk(k, dim=0)
            distances[start : start + chunk] = (
                (1.0 - nearest.values.T).clamp_(0.0, 2.0).numpy()
            )
            indices[start : start + chunk] = nearest.indices.T.numpy()
        return distances, indices


class KNNProbeClassifier(ClassifierMixin, _KNNBase):
    kind = "multiclass"

    def fit(self, X, y) -> KNNProbeClassifier:
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, self._codes = np.unique(y, return_inverse=True)
        self._fit_rows(X)
        return self

    def _counts(self, X) -> np.ndarray:
        """How many of each row's neighbours have each class (n_samples, n_classes)."""
        rows = self.kneighbors(X)[1]  # first: it checks that the probe is fitted
        codes = self._codes[rows]
        counts = np.zeros((len(codes), len(self.classes_)))
        np.add.at(counts, (np.arange(len(codes))[:, None], codes), 1.0)
        return counts

    def predict_proba(self, X) -> np.ndarray:
        counts = self._counts(X)
        return counts / counts.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        counts = self._counts(X)
        # argmax takes the first of the most: a tie goes to the smallest class
        return self.classes_[counts.argmax(axis=1)]


class KNNProbeTagger(TaggerMixin, ClassifierMixin, _KNNBase):
    kind = "multilabel"

    def fit(self, X, y) -> KNNProbeTagger:
        self._validate_params()
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], multi_output=True
        )
        Y = check_tags(y)
        self.classes_ = np.arange(Y.shape[1])
        self.n_outputs_ = Y.shape[1]
        self._tags = Y.astype(np.float64)
        self._fit_rows(X)
        return self

    def decision_function(self, X) -> np.ndarray:
        """The fraction of the neighbours that have each tag (n_samples, n_tags)."""
        rows = self.kneighbors(X)[1]  # first: it checks that the probe is fitted
        return self._tags[rows].mean(axis=1)

    predict_proba = decision_function

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0.5).astype(np.uint8)


class KNNProbeRegressor(RegressorMixin, _KNNBase):
    kind = "regression"

    def fit(self, X, y) -> KNNProbeRegressor:
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True)
        self._targets = check_targets(y)
        self._fit_rows(X)
        return self

    def predict(self, X) -> np.ndarray:
        rows = self.kneighbors(X)[1]  # first: it checks that the probe is fitted
        return self._targets[rows].mean(axis=1)
