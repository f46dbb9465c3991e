"""SVM with its kernel matrix computed in torch and handed to libsvm as a precomputed kernel.

libsvm evaluates an RBF kernel entry by entry in double precision; for a few thousand clips of
3,585 features that dominates the fit. The same matrix is one matrix product in torch (on the
run's device), and libsvm then only solves the dual problem. Kernel matrices are kept for the
trials of a sweep that run in one process and share the training data and gamma (the paper's
grid tries four C values per gamma).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.svm import SVC
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..devices import resolve_device
from .products import linear

KERNELS = ("rbf", "linear")
_GRAM_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_GRAM_CACHE_BYTES = 2 * 1024**3


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """K[i, j] = exp(-gamma ||a_i - b_j||^2), or a_i . b_j; computed in the inputs' dtype."""
    dot = linear(a, b)
    if kernel == "linear":
        return dot
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * dot
    return torch.exp(-gamma * sq.clamp_min_(0.0))


class KernelSVC(ClassifierMixin, BaseEstimator):
    """scikit-learn's SVC (libsvm) with the kernel matrix from torch; same parameters for the
    kernels it supports (rbf, linear), predictions matching SVC's."""

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "kernel": [StrOptions(set(KERNELS))],
        "gamma": [StrOptions({"scale", "auto"}), Interval(Real, 0, None, closed="neither")],
        "device": [str],
        "dtype": [StrOptions({"float32", "float64"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        C: float = 2.0,
        kernel: str = "rbf",
        gamma: float | str = "auto",
        device: str = "cpu",
        dtype: str = "float32",
        random_state=None,
    ):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.device = device
        self.dtype = dtype
        self.random_state = random_state

    def _gamma(self, X: np.ndarray) -> float:
        if self.gamma == "scale":
            var = X.var()
            return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        if self.gamma == "auto":
            return 1.0 / X.shape[1]
        return float(self.gamma)

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.require(X, requirements="W"), dtype=getattr(torch, self.dtype), device=self.device_)

    def _gram(self, X: np.ndarray) -> np.ndarray:
        key = (hashlib.blake2b(np.ascontiguousarray(X).view(np.uint8), digest_size=16).hexdigest(), X.shape,
               self.kernel, self.gamma_ if self.kernel == "rbf" else None, self.dtype)  # fmt: skip
        if key in _GRAM_CACHE:
            _GRAM_CACHE.move_to_end(key)
            return _GRAM_CACHE[key]
        x = self._tensor(X)
        gram = kernel_matrix(x, x, self.kernel, self.gamma_).double().cpu().numpy()
        _GRAM_CACHE[key] = gram
        while sum(g.nbytes for g in _GRAM_CACHE.values()) > _GRAM_CACHE_BYTES and len(_GRAM_CACHE) > 1:
            _GRAM_CACHE.popitem(last=False)
        return gram

    def fit(self, X, y) -> "KernelSVC":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.device_ = resolve_device(self.device)
        self.gamma_ = self._gamma(X)
        self.svc_ = SVC(C=self.C, kernel="precomputed").fit(self._gram(X), y)
        self.classes_ = self.svc_.classes_
        self.X_fit_ = X
        return self

    def _cross(self, X) -> np.ndarray:
        check_is_fitted(self, "svc_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return kernel_matrix(self._tensor(X), self._tensor(self.X_fit_), self.kernel, self.gamma_).double().cpu().numpy()

    def decision_function(self, X) -> np.ndarray:
        cross = self._cross(X)
        return self.svc_.decision_function(cross)

    def predict(self, X) -> np.ndarray:
        cross = self._cross(X)
        return self.svc_.predict(cross)

    def __sklearn_tags__(self):
        """With ``dtype=float32`` the kernel matrix is a float32 product whose summation order
        depends on the number of rows: decision values on a subset of the rows agree with those
        on all of them to float32 rounding, not bit for bit, so scikit-learn's exact-equality
        checks of that kind do not apply. ``dtype=float64`` is deterministic."""
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.dtype == "float32"
        return tags
