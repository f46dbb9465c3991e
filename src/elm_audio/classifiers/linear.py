"""The linear probe (``classifier=linear``): logistic regression for one label a clip, one-vs-rest
logistic regression for tags, ridge regression for targets, on the embeddings (standardized by
the pipeline where ``standardize``), as X-ARES and MARBLE score an encoder with a linear model.

One regularization knob for every kind, ``C``, scikit-learn's: the logistic losses minimize
``sum_i loss_i + ||W||^2 / (2 C)`` (the intercepts unpenalized), as ``LogisticRegression(C=C)``;
ridge minimizes ``sum_i (y_i - f(x_i))^2 + ||w||^2 / (2 C)``, i.e. scikit-learn's ``Ridge`` with
``alpha = 1 / (2 C)`` (the same penalty weight against a sum of squared errors), on targets
standardized on the training rows (which leaves ridge's predictions as they are: the solution
is linear in the targets) and returned in their own units.

The logistic fits run in torch on ``device``: L-BFGS (strong Wolfe line search, history 10, as
scipy's) on the mean loss plus ``||W||^2 / (2 C n)`` (scikit-learn's scaling of the same
objective), stopped where the largest gradient entry is below ``tol`` (scikit-learn's ``tol``
criterion for lbfgs) or after ``max_iter`` iterations. For tags, all tags are one batched problem,
(n, d) x (d, n_tags) products: the objective is the sum of the independent per-tag objectives,
so its minimizer is each tag's own logistic regression and the gradient criterion holds for
every tag. Products in float32. Ridge's products are in the input's dtype (float32 or float64),
its one (d x d) or (n x n) Cholesky solve as accurate as a float64 one (``LinearProbeRegressor``).

Differences from the two benchmarks: X-ARES and MARBLE train their linear layer with Adam on
mini-batches for a fixed number of epochs and choose the epoch on the validation split; here the
convex problem is solved to convergence and ``C`` is what the sweeper chooses on validation.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import blas, lapack
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..devices import resolve_device
from ..products import linear
from .kinds import TaggerMixin, check_tags, check_targets, constant_tags, standardizer


def logistic_lbfgs(x: torch.Tensor, targets: torch.Tensor, loss: str, C: float, max_iter: int, tol: float):
    """(W (d, k), b (k,), iterations) minimizing mean(loss) + ||W||^2 / (2 C n): ``loss``
    ``softmax`` (targets: class codes) or ``sigmoid`` (targets: (n, k) of 0/1, a sum over the
    k columns). W starts at zero, b at the training rows' log odds."""
    n, d = x.shape
    if loss == "softmax":
        k = int(targets.max()) + 1
        freq = torch.bincount(targets, minlength=k).to(x.dtype) / n
        b0 = freq.clamp_min(1e-12).log()
    else:
        k = targets.shape[1]
        p = targets.mean(0).clamp(1e-6, 1 - 1e-6)
        b0 = (p / (1 - p)).log()
    w = torch.zeros(d, k, dtype=x.dtype, device=x.device)
    b = b0.clone()
    penalty = 1.0 / (2.0 * C * n)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, max_eval=max_iter * 5 // 4, tolerance_grad=tol,
                            tolerance_change=1e-12, history_size=10, line_search_fn="strong_wolfe")  # fmt: skip

    rows = torch.arange(n, device=x.device)

    @torch.no_grad()
    def closure():
        """The objective, and its gradients written by hand rather than by autograd, whose
        backward took x.T @ grad: with (n, d) x and few columns, MKL computed that product 6x
        more slowly than grad.T @ x, the same numbers (half of scikit-learn's speed overall)."""
        logits = linear(x, w.T) + b
        if loss == "softmax":
            log_p = F.log_softmax(logits, dim=1)
            value = -log_p[rows, targets].mean()
            residual = log_p.exp_()
            residual[rows, targets] -= 1.0
        else:
            value = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / n
            residual = torch.sigmoid(logits).sub_(targets)
        residual /= n  # d(mean loss) / d(logits)
        w.grad = (residual.T @ x).T.contiguous().add_(w, alpha=2.0 * penalty)
        b.grad = residual.sum(0)
        return value + penalty * (w * w).sum()

    opt.step(closure)
    iterations = int(opt.state[w].get("n_iter", 0))
    return w.detach(), b.detach(), iterations


class _LinearBase(BaseEstimator):
    kind: str

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
    }

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-4, device: str = "cpu", random_state=None):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state  # the fits are deterministic: taken, as every estimator here takes it

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.require(X, dtype=np.float32, requirements="W"), device=self.device_)

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        w = torch.as_tensor(self.coef_.T, dtype=torch.float32, device=self.device_)
        b = torch.as_tensor(self.intercept_, dtype=torch.float32, device=self.device_)
        return torch.addmm(b, self._tensor(X), w).double().cpu().numpy()

    def __sklearn_tags__(self):
        """Float32 products summed in an order that depends on the number of rows: values on a
        subset of the rows agree with those on all of them to float32 rounding."""
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags


class LinearProbeClassifier(ClassifierMixin, _LinearBase):
    """Logistic regression (multinomial; binary for two classes, as scikit-learn's
    ``LogisticRegression``) in torch on ``device``. ``coef_`` (k, d), ``intercept_`` (k,), with
    k = 1 for two classes; ``n_iter_`` the L-BFGS iterations."""

    kind = "multiclass"

    def fit(self, X, y) -> "LinearProbeClassifier":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.device_ = resolve_device(self.device)
        x = self._tensor(X)
        if len(self.classes_) == 1:
            raise ValueError("LinearProbeClassifier needs samples of at least 2 classes in the data; got 1 class")
        if len(self.classes_) == 2:
            targets = torch.as_tensor(codes[:, None], dtype=torch.float32, device=self.device_)
            w, b, self.n_iter_ = logistic_lbfgs(x, targets, "sigmoid", self.C, self.max_iter, self.tol)
        else:
            targets = torch.as_tensor(codes, dtype=torch.long, device=self.device_)
            w, b, self.n_iter_ = logistic_lbfgs(x, targets, "softmax", self.C, self.max_iter, self.tol)
        self.coef_, self.intercept_ = w.T.double().cpu().numpy(), b.double().cpu().numpy()
        return self

    def decision_function(self, X) -> np.ndarray:
        """One column per class; for two classes one value per sample (positive for ``classes_[1]``)."""
        logits = self._logits(X)
        return logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        logits = self._logits(X)
        if len(self.classes_) == 2:
            p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1 - p, p], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        return self.classes_[(scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)]


class LinearProbeTagger(TaggerMixin, ClassifierMixin, _LinearBase):
    """One-vs-rest logistic regression for tags, every tag in one batched L-BFGS problem in torch
    on ``device``. ``decision_function`` returns the logits (n_samples, n_tags); ``predict`` 1
    where a logit is positive. A tag with one value only in the training rows scores a constant,
    -1 (never present) or +1 (always).

    ``tol`` is 1e-5 by default, a tenth of the one-label probe's: one L-BFGS over every tag, its
    curvature history shared by all of them, met 1e-4 with the rare tags short of their optimum
    (50 tags, 20,000 clips: held-out mAP 0.809 against scikit-learn's one-vs-rest 0.836, and its
    rarest tag's objective 17.7 against 10.6 at the optimum); at 1e-5 it reached 0.881, still
    1.4x faster than scikit-learn (benchmarks/probes.py)."""

    kind = "multilabel"

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-5, device: str = "cpu", random_state=None):
        super().__init__(C=C, max_iter=max_iter, tol=tol, device=device, random_state=random_state)

    def fit(self, X, y) -> "LinearProbeTagger":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64], multi_output=True)
        Y = check_tags(y)
        self.device_ = resolve_device(self.device)
        self.classes_ = np.arange(Y.shape[1])
        self.n_outputs_ = Y.shape[1]
        constant = constant_tags(Y)
        self.coef_ = np.zeros((Y.shape[1], X.shape[1]))
        self.intercept_ = np.where(Y[0] == 1, 1.0, -1.0) * constant  # the constant tags' scores
        self.n_iter_ = 0
        learn = np.flatnonzero(~constant)
        if len(learn):
            targets = torch.as_tensor(Y[:, learn], dtype=torch.float32, device=self.device_)
            w, b, self.n_iter_ = logistic_lbfgs(self._tensor(X), targets, "sigmoid", self.C, self.max_iter, self.tol)
            self.coef_[learn], self.intercept_[learn] = w.T.double().cpu().numpy(), b.double().cpu().numpy()
        return self

    def decision_function(self, X) -> np.ndarray:
        return self._logits(X)

    def predict_proba(self, X) -> np.ndarray:
        """Each tag's probability (n_samples, n_tags), as scikit-learn's multilabel estimators."""
        return 1.0 / (1.0 + np.exp(-self._logits(X)))

    def predict(self, X) -> np.ndarray:
        return (self._logits(X) > 0).astype(np.uint8)


class LinearProbeRegressor(RegressorMixin, _LinearBase):
    """Ridge regression with ``alpha = 1 / (2 C)`` (scikit-learn's ``Ridge(alpha)``, intercept
    unpenalized), a direct Cholesky solve (no ``max_iter`` or ``tol``) in the (d x d) form or the
    (n x n) one, whichever is smaller.

    The rows are centered (on means summed in float64) and their Gram matrix and products
    computed in the input's dtype, as ``Ridge`` does: float32 for float32 input, float64 for any
    other. On the CPU by scipy's BLAS and LAPACK (``_ridge_on_cpu``), elsewhere by torch's.

    The solve is float64's in accuracy. For float32 input on the CPU, a float32 Cholesky
    factorization, its solution refined once against the system in float64: measured on
    20,000 x 3,500 float32 rows on a 2-core EPYC, the Gram matrix took 1.4 s, a float64
    factorization 0.19 s, a float32 one 0.11 s; on ill-conditioned rows (features of rank 200
    plus 1% noise, C 1 and 50) the coefficients' error against a float64 fit was 2.9% and 5.3%
    from the float32 solve alone (scikit-learn's float32 ``Ridge``: 2.9% and 5.0%), 0.9% and
    1.4% after the refinement, as from the float64 solve; the held-out R² stayed within 1e-5 of
    the float64 fit's in every case. Otherwise (float64 input, a float32 factorization that
    fails, another device) a float64 factorization. ``coef_`` and ``intercept_`` are float64;
    ``predict`` returns float64, its product in X's dtype."""

    kind = "regression"

    _parameter_constraints: dict = {k: v for k, v in _LinearBase._parameter_constraints.items() if k not in ("max_iter", "tol")}

    def __init__(self, C: float = 1.0, device: str = "cpu", random_state=None):
        self.C = C
        self.device = device
        self.random_state = random_state

    def fit(self, X, y) -> "LinearProbeRegressor":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True)
        y = check_targets(y)
        self.device_ = resolve_device(self.device)
        self.target_mean_, self.target_scale_ = standardizer(y)
        z = ((y - self.target_mean_) / self.target_scale_).astype(X.dtype)
        mean = X.mean(axis=0, dtype=np.float64)  # a float64 sum: float32 ones drift over many rows
        shift = mean.astype(X.dtype)
        alpha = 1.0 / (2.0 * self.C)
        if self.device_.type == "cpu":
            w = _ridge_on_cpu(X, shift, z, alpha)
        else:
            x = torch.as_tensor(np.require(X, requirements="W"), device=self.device_) - torch.as_tensor(shift, device=self.device_)
            w = _ridge_in_torch(x, torch.as_tensor(z, device=self.device_), alpha, _lift(X.dtype)).cpu().numpy()
        self.coef_ = w * self.target_scale_
        self.intercept_ = float(self.target_mean_ - mean @ self.coef_)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return (X @ self.coef_.astype(X.dtype)).astype(np.float64) + self.intercept_

    def __sklearn_tags__(self):
        """Deterministic: the same rows give the same coefficients, and each prediction is its
        row's product alone (float64 throughout for float64 input; float32 products for float32)."""
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


# rows centered at a time for the Gram matrix on the CPU: a buffer the cache and the BLAS like
GRAM_ROWS = 2048


def _lift(dtype: np.dtype) -> float:
    """Where the Cholesky factorization fails (alpha far below the rounding of the Gram matrix),
    the diagonal is lifted by this fraction of its largest entry: about the relative rounding of
    a Gram matrix computed in ``dtype``."""
    return 1e-12 if dtype == np.float64 else 1e-6


def _ridge_on_cpu(X: np.ndarray, shift: np.ndarray, z: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge's w (float64) for xc = X - shift and targets z, by scipy's BLAS and LAPACK (OpenBLAS,
    with AVX-512 kernels on AMD CPUs too, where torch's MKL runs AVX2: its Cholesky
    factorizations took about half torch's time). The (d x d) form centers the rows
    ``GRAM_ROWS`` at a time into one buffer and adds each block's Gram matrix by BLAS's
    symmetric rank-k update (half a general product's arithmetic; torch has none), with no
    centered copy of X; its products stay in scipy's BLAS, as alternating with numpy's (another
    library, its own threads) left each library's threads waiting on the other's (1.8 s against
    1.45 s for the 20,000 x 3,500 Gram matrix)."""
    n, d = X.shape
    if d > n:  # w = X' (XX' + aI)^-1 z: fewer rows than features
        xc = X - shift
        dual = _cholesky_solve_on_cpu(xc @ xc.T, z, alpha, _lift(X.dtype))  # numpy's product: a syrk too
        return (xc.T @ dual.astype(X.dtype)).astype(np.float64)
    syrk, gemv = (blas.ssyrk, blas.sgemv) if X.dtype == np.float32 else (blas.dsyrk, blas.dgemv)
    gram = np.zeros((d, d), dtype=X.dtype, order="F")  # its lower triangle filled: all the factorization reads
    xtz = np.zeros(d, dtype=X.dtype)
    buffer = np.empty((min(GRAM_ROWS, n), d), dtype=X.dtype)
    for start in range(0, n, GRAM_ROWS):
        block = np.subtract(X[start : start + GRAM_ROWS], shift, out=buffer[: min(GRAM_ROWS, n - start)])
        gram = syrk(1.0, block.T, beta=1.0, c=gram, trans=0, lower=1, overwrite_c=1)  # block.T: Fortran order, no copy
        xtz = gemv(1.0, block.T, z[start : start + GRAM_ROWS], beta=1.0, y=xtz, overwrite_y=1)
    return _cholesky_solve_on_cpu(gram, xtz, alpha, _lift(X.dtype))  # (X'X + aI) w = X'z


def _cholesky_solve_on_cpu(gram: np.ndarray, rhs: np.ndarray, alpha: float, lift: float) -> np.ndarray:
    """(gram + alpha I)^-1 rhs in float64 by LAPACK's Cholesky, reading gram's lower triangle. A
    float32 gram is factorized in float32 and the solution refined once against the system in
    float64: the float64 solve's accuracy at the float32 factorization's cost. Where that
    factorization fails (gram, rounded to float32, barely positive definite), float64."""
    rhs = rhs.astype(np.float64)
    diagonal = np.diag_indices_from(gram)
    if gram.dtype == np.float32:
        a = np.array(gram, order="F")
        a[diagonal] += alpha
        factor, info = lapack.spotrf(a, lower=1, overwrite_a=1, clean=0)
        if info == 0:
            w = lapack.spotrs(factor, rhs.astype(np.float32), lower=1)[0].astype(np.float64)
            system = np.array(gram, dtype=np.float64, order="F")
            system[diagonal] += alpha
            residual = blas.dsymv(-1.0, system, w, beta=1.0, y=rhs, lower=1)  # rhs - system w
            return w + lapack.spotrs(factor, residual.astype(np.float32), lower=1)[0]
    for extra in (0.0, lift * np.abs(np.diagonal(gram)).max()):
        a = np.array(gram, dtype=np.float64, order="F")
        a[diagonal] += alpha + extra
        factor, info = lapack.dpotrf(a, lower=1, overwrite_a=1, clean=0)
        if info == 0:
            return lapack.dpotrs(factor, rhs, lower=1)[0]
    raise np.linalg.LinAlgError(f"the ridge system is not positive definite (LAPACK dpotrf info {info})")


def _ridge_in_torch(xc: torch.Tensor, z: torch.Tensor, alpha: float, lift: float) -> torch.Tensor:
    """Ridge's w (float64) for the centered rows xc and targets z, in torch on their device."""
    if xc.shape[1] <= xc.shape[0]:  # (X'X + aI) w = X'z
        return torch.cholesky_solve((xc.T @ z).double()[:, None], _cholesky((xc.T @ xc).double(), alpha, lift))[:, 0]
    dual = torch.cholesky_solve(z.double()[:, None], _cholesky((xc @ xc.T).double(), alpha, lift))[:, 0]
    return (xc.T @ dual.to(xc.dtype)).double()


def _cholesky(gram: torch.Tensor, alpha: float, lift: float) -> torch.Tensor:
    gram.diagonal().add_(alpha)
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:  # only where alpha is far below the rounding of gram: lift the diagonal
        gram.diagonal().add_(gram.diagonal().abs().max() * lift)
        factor = torch.linalg.cholesky(gram)
    return factor
