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
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.svm import SVC, SVR
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..devices import resolve_device
from .kinds import TaggerMixin, check_tags, check_targets, constant_tags, standardizer
from ..products import gram, linear

KERNELS = ("rbf", "linear")
_GRAM_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_GRAM_CACHE_BYTES = 2 * 1024**3
# float32 rows stay float32 (a float64 copy of 3,600 x 3,585 features is 0.1 s and 100 MB); the
# kernel is computed in ``dtype`` either way
FLOATS = [np.float64, np.float32]


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """K[i, j] = exp(-gamma ||a_i - b_j||^2), or a_i . b_j; computed in the inputs' dtype, the
    exponent's terms in place on the product (a 3,600 x 3,600 kernel: one pass over it per term,
    no temporaries)."""
    dot = gram(a) if a is b else linear(a, b)
    if kernel == "linear":
        return dot
    norms = torch.linalg.vector_norm(a, dim=1).square_()  # one pass over the rows: (a * a).sum(1) is 20x slower
    other = norms if b is a else torch.linalg.vector_norm(b, dim=1).square_()
    sq = dot.mul_(-2.0).add_(norms[:, None]).add_(other[None, :])
    return sq.clamp_min_(0.0).mul_(-gamma).exp_()


def for_libsvm(kernel: torch.Tensor) -> np.ndarray:
    """A kernel matrix as libsvm takes it: float64 on the CPU (numpy's conversion, 3x torch's)."""
    return np.asarray(kernel.cpu().numpy(), dtype=np.float64)


class _KernelBase(BaseEstimator):
    """What the kernel estimators share: gamma, the kernel matrix of the training rows (computed
    once in torch, kept for the trials of a sweep), the cross kernel of new rows."""

    kind: str

    def _gamma(self, X: np.ndarray) -> float:
        if self.gamma == "scale":
            var = np.asarray(X, dtype=np.float64).var()  # as SVC's, whichever float X is
            return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        if self.gamma == "auto":
            return 1.0 / X.shape[1]
        return float(self.gamma)

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.require(X, requirements="W"), dtype=getattr(torch, self.dtype), device=self.device_)

    def _gram(self, X: np.ndarray) -> np.ndarray:
        # sha256: SHA extensions make it 2x blake2b where the CPU has them (AMD since Zen, Intel since Ice Lake)
        key = (hashlib.sha256(np.ascontiguousarray(X).view(np.uint8)).hexdigest(), X.shape, X.dtype.str,
               self.kernel, self.gamma_ if self.kernel == "rbf" else None, self.dtype)  # fmt: skip
        if key in _GRAM_CACHE:
            _GRAM_CACHE.move_to_end(key)
            return _GRAM_CACHE[key]
        x = self._tensor(X)
        matrix = for_libsvm(kernel_matrix(x, x, self.kernel, self.gamma_))
        _GRAM_CACHE[key] = matrix
        while sum(g.nbytes for g in _GRAM_CACHE.values()) > _GRAM_CACHE_BYTES and len(_GRAM_CACHE) > 1:
            _GRAM_CACHE.popitem(last=False)
        return matrix

    def _cross(self, X) -> np.ndarray:
        check_is_fitted(self, "X_fit_")
        X = validate_data(self, X, dtype=FLOATS, reset=False)
        return for_libsvm(kernel_matrix(self._tensor(X), self._tensor(self.X_fit_), self.kernel, self.gamma_))

    def __sklearn_tags__(self):
        """With ``dtype=float32`` the kernel matrix is a float32 product whose summation order
        depends on the number of rows: decision values on a subset of the rows agree with those
        on all of them to float32 rounding, not bit for bit, so scikit-learn's exact-equality
        checks of that kind do not apply. ``dtype=float64`` is deterministic."""
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.dtype == "float32"
        return tags


class KernelSVC(ClassifierMixin, _KernelBase):
    """scikit-learn's SVC (libsvm) with the kernel matrix from torch; same parameters for the
    kernels it supports (rbf, linear), predictions matching SVC's."""

    kind = "multiclass"

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

    def fit(self, X, y) -> "KernelSVC":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=FLOATS)
        check_classification_targets(y)
        self.device_ = resolve_device(self.device)
        self.gamma_ = self._gamma(X)
        self.svc_ = SVC(C=self.C, kernel="precomputed").fit(self._gram(X), y)
        self.classes_ = self.svc_.classes_
        self.X_fit_ = X
        return self

    def decision_function(self, X) -> np.ndarray:
        cross = self._cross(X)
        return self.svc_.decision_function(cross)

    def predict(self, X) -> np.ndarray:
        cross = self._cross(X)
        return self.svc_.predict(cross)


class KernelSVCTagger(TaggerMixin, ClassifierMixin, _KernelBase):
    """One-vs-rest SVMs for multilabel tagging: one libsvm SVC per tag, all on the same kernel
    matrix (computed once in torch, as ``KernelSVC``'s), fitted in ``n_jobs`` threads (libsvm
    releases the GIL; each fit is independent, so the result does not depend on the threads).
    ``decision_function`` returns each tag's SVM decision value (n_samples, n_tags); ``predict``
    1 where it is positive. A tag with one value only in the training rows (never or always
    present) has nothing to learn: it scores a constant, -1 (never) or +1 (always)."""

    kind = "multilabel"

    _parameter_constraints: dict = {**KernelSVC._parameter_constraints, "n_jobs": [Integral, None]}

    def __init__(
        self,
        C: float = 2.0,
        kernel: str = "rbf",
        gamma: float | str = "auto",
        device: str = "cpu",
        dtype: str = "float32",
        n_jobs: int | None = -1,
        random_state=None,
    ):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.device = device
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y) -> "KernelSVCTagger":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=FLOATS, multi_output=True)
        Y = check_tags(y)
        self.device_ = resolve_device(self.device)
        self.gamma_ = self._gamma(X)
        gram = self._gram(X)
        self.classes_ = np.arange(Y.shape[1])
        self.n_outputs_ = Y.shape[1]
        constant = constant_tags(Y)
        # the constant score of a tag with nothing to learn; NaN where an SVM is fitted
        self.constant_scores_ = np.where(constant, np.where(Y[0] == 1, 1.0, -1.0), np.nan)

        def fit(t: int) -> SVC:
            return SVC(C=self.C, kernel="precomputed").fit(gram, Y[:, t])

        fitted = Parallel(n_jobs=self.n_jobs, prefer="threads")(delayed(fit)(t) for t in np.flatnonzero(~constant))
        svcs = iter(fitted)
        self.svcs_ = [None if constant[t] else next(svcs) for t in range(Y.shape[1])]
        self.X_fit_ = X
        return self

    def decision_function(self, X) -> np.ndarray:
        cross = self._cross(X)
        scores = np.empty((len(cross), len(self.svcs_)))
        for t, svc in enumerate(self.svcs_):
            scores[:, t] = self.constant_scores_[t] if svc is None else svc.decision_function(cross)
        return scores

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.uint8)


class KernelSVR(RegressorMixin, _KernelBase):
    """Support vector regression (libsvm's epsilon-SVR) on the kernel matrix from torch. The
    targets are standardized on the training rows, so ``epsilon`` (the width of the tube in
    which errors cost nothing) and ``C`` mean the same on every task: epsilon is in units of
    the targets' standard deviation. ``predict`` returns values in the targets' own units."""

    kind = "regression"

    _parameter_constraints: dict = {**KernelSVC._parameter_constraints, "epsilon": [Interval(Real, 0, None, closed="left")]}

    def __init__(
        self,
        C: float = 2.0,
        epsilon: float = 0.1,
        kernel: str = "rbf",
        gamma: float | str = "auto",
        device: str = "cpu",
        dtype: str = "float32",
        random_state=None,
    ):
        self.C = C
        self.epsilon = epsilon
        self.kernel = kernel
        self.gamma = gamma
        self.device = device
        self.dtype = dtype
        self.random_state = random_state

    def fit(self, X, y) -> "KernelSVR":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=FLOATS, y_numeric=True)
        y = check_targets(y)
        self.device_ = resolve_device(self.device)
        self.gamma_ = self._gamma(X)
        self.target_mean_, self.target_scale_ = standardizer(y)
        z = (y - self.target_mean_) / self.target_scale_
        self.svr_ = SVR(C=self.C, epsilon=self.epsilon, kernel="precomputed").fit(self._gram(X), z)
        self.X_fit_ = X
        return self

    def predict(self, X) -> np.ndarray:
        cross = self._cross(X)
        return self.svr_.predict(cross) * self.target_scale_ + self.target_mean_
