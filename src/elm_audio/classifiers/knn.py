"""The k-nearest-neighbour probe for every kind: the ``n_neighbors`` training rows nearest by
cosine (brute force, scikit-learn's), with as many neighbours as there are training rows where
fewer than ``n_neighbors``. Put it after a StandardScaler, as ``protocols.knn_probe`` does
(cosine on standardized features).

- ``KNNProbeClassifier``: the majority of the neighbours' labels: exactly
  ``KNeighborsClassifier(n_neighbors=min(k, n_train), metric="cosine", algorithm="brute")``,
  what ``knn_probe`` has always computed.
- ``KNNProbeTagger``: each tag's score is the fraction of the neighbours that have it (the mean
  of their 0/1 tag vectors); ``predict`` 1 where more than half have it.
- ``KNNProbeRegressor``: the mean of the neighbours' targets.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .kinds import TaggerMixin, check_tags, check_targets


class _KNNBase(BaseEstimator):
    kind: str

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(self, n_neighbors: int = 10, n_jobs: int | None = None, random_state=None):
        self.n_neighbors = n_neighbors
        self.n_jobs = n_jobs
        self.random_state = random_state  # not used: the probe draws nothing

    def _neighbours(self, kind, n_train: int):
        k = min(self.n_neighbors, n_train)
        return kind(n_neighbors=k, metric="cosine", algorithm="brute", n_jobs=self.n_jobs)

    def _fitted(self, X):
        """The fitted neighbours and X checked against the training rows."""
        check_is_fitted(self, "model_")
        return self.model_, validate_data(self, X, reset=False)


class KNNProbeClassifier(ClassifierMixin, _KNNBase):
    kind = "multiclass"

    def fit(self, X, y) -> "KNNProbeClassifier":
        self._validate_params()
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.model_ = self._neighbours(KNeighborsClassifier, len(X)).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        model, X = self._fitted(X)
        return model.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        model, X = self._fitted(X)
        return model.predict(X)


class KNNProbeTagger(TaggerMixin, ClassifierMixin, _KNNBase):
    kind = "multilabel"

    def fit(self, X, y) -> "KNNProbeTagger":
        self._validate_params()
        X, y = validate_data(self, X, y, multi_output=True)
        Y = check_tags(y)
        self.classes_ = np.arange(Y.shape[1])
        self.n_outputs_ = Y.shape[1]
        self.model_ = self._neighbours(KNeighborsRegressor, len(X)).fit(X, Y.astype(np.float64))
        return self

    def decision_function(self, X) -> np.ndarray:
        """The fraction of the neighbours that have each tag (n_samples, n_tags)."""
        model, X = self._fitted(X)
        scores = model.predict(X)
        return scores.reshape(len(scores), -1)

    predict_proba = decision_function

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0.5).astype(np.uint8)


class KNNProbeRegressor(RegressorMixin, _KNNBase):
    kind = "regression"

    def fit(self, X, y) -> "KNNProbeRegressor":
        self._validate_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        y = check_targets(y)
        self.model_ = self._neighbours(KNeighborsRegressor, len(X)).fit(X, y)
        return self

    def predict(self, X) -> np.ndarray:
        model, X = self._fitted(X)
        return model.predict(X)
