"""Extreme learning machine as a scikit-learn estimator (docs/method.md, "Classifiers")."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..devices import resolve_device
from ..products import gram, linear, transposed_product
from .kinds import TaggerMixin, check_tags, check_targets, standardizer

# scipy <= 1.6's pinv2, which the original called: singular values below 1e6 eps max(s) are cut.
PINV_RTOL = 1e6 * torch.finfo(torch.float64).eps


def largest_eigenvalue(h: torch.Tensor, steps: int = 4) -> float:
    """The largest eigenvalue of h'h (that of hh' too), by power iteration from the all-ones
    vector: ReLU outputs are non-negative and their leading direction is close to it, so a few
    steps give it to a few digits. Products in h's precision (a cheap pass over h), the Rayleigh
    quotient in float64: its rounding moves a decision on it only for an alpha within about
    1e-6 of the bound."""
    v = torch.ones(h.shape[1], dtype=h.dtype, device=h.device)
    value = 0.0
    for _ in range(steps):
        u = h.T @ (h @ v)
        value = float(v.double() @ u.double()) / float(v.double() @ v.double())
        v = u / u.norm()
    return value


def solver_for(h: torch.Tensor, alpha: float) -> str:
    """How to solve the ridge system of hidden outputs ``h``, decided before any factorization,
    from a float64 bound on its condition number, (largest eigenvalue + alpha) / alpha:
    ``float32`` Cholesky where it is within float32's precision (1 / eps), ``float64`` (hidden
    outputs recomputed in float64) where it is within float64's, least squares (``lstsq``)
    beyond. Trying float32 first and falling back where its factorization failed made the
    path, hence the model, depend on the threads' summation order."""
    largest = largest_eigenvalue(h)
    for solver, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        if largest * torch.finfo(dtype).eps <= alpha:
            return solver
    return "lstsq"


def ridge_solve(products: torch.Tensor, rhs: torch.Tensor, alpha: float, solver: str) -> torch.Tensor:
    """(products + alpha I)^-1 rhs for a symmetric matrix of products: by Cholesky in its
    precision or, for ``lstsq``, by least squares. A float32 factorization can still fail just inside the
    bound (a system whose rounding errors all point one way): it is then solved by least squares."""
    products.diagonal().add_(alpha)
    if solver != "lstsq":
        factor, info = torch.linalg.cholesky_ex(products)
        if int(info) == 0:
            return torch.cholesky_solve(rhs, factor)
    return torch.linalg.lstsq(products.double().cpu(), rhs.double().cpu()).solution.to(rhs.device, rhs.dtype)


class _ELMBase(BaseEstimator):
    """What every ELM shares: the hidden layer's draw, the ridge solve for any number of
    outputs, the outputs. The kinds differ in their targets only."""

    kind: str

    def _hidden(self, X: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        x = torch.as_tensor(np.require(X, requirements="W"), dtype=dtype, device=self.device_)  # torch needs writable memory
        return linear(x, self.w1_.to(dtype), self.b1_.to(dtype)).relu_()

    def _draw(self, n_features: int) -> tuple[torch.Tensor, torch.Tensor]:
        """W1 (hidden_units, n_features), as torch.nn.Linear's weight, and b1."""
        rng = check_random_state(self.random_state)
        if self.hidden_draw == "original":
            b = rng.normal(size=self.hidden_units)
            w = rng.normal(size=(n_features, self.hidden_units))
            return torch.from_numpy(w.T.copy()), torch.from_numpy(b)
        gen = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        w = torch.randn(self.hidden_units, n_features, generator=gen).div_(np.sqrt(n_features))
        return w, torch.randn(self.hidden_units, generator=gen)

    def _fit_outputs(self, X: np.ndarray, make_targets) -> "_ELMBase":
        """Draw the hidden layer and solve for the output layer; ``make_targets(dtype, device)``
        gives the (n_samples, n_outputs) targets in the hidden outputs' precision."""
        self.device_ = resolve_device(self.device)
        w, b = self._draw(X.shape[1])
        self.w1_, self.b1_ = w.to(self.device_), b.to(self.device_)  # as drawn; _hidden casts them
        h = self._hidden(X, torch.float64 if self.alpha == 0 else torch.float32)
        dual = h.shape[1] > h.shape[0]  # more units than samples: the (n_samples x n_samples) form
        self.solver_ = "pinv" if self.alpha == 0 else solver_for(h, self.alpha)
        if self.solver_ in ("float64", "lstsq"):
            h = self._hidden(X, torch.float64)
        targets = make_targets(h.dtype, self.device_)
        if self.solver_ == "pinv":
            self.w2_ = torch.linalg.pinv(h, rtol=PINV_RTOL) @ targets
        elif not dual:  # primal: (H'H + aI) W2 = H'Y
            self.w2_ = ridge_solve(gram(h.T), transposed_product(h, targets), self.alpha, self.solver_)
        else:  # dual: W2 = H' (HH' + aI)^-1 Y
            self.w2_ = transposed_product(h, ridge_solve(gram(h), targets, self.alpha, self.solver_))
        return self

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "w2_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return (self._hidden(X, self.w2_.dtype) @ self.w2_).cpu().numpy()

    def __sklearn_tags__(self):
        """With ``alpha > 0`` the products and the solve run in float32, summed in an order that
        depends on the number of rows and on the threads: refits and predictions on subsets
        agree to float32 rounding (about 1e-6 relative), not bit for bit, so scikit-learn's
        exact-equality checks of that kind do not apply. ``alpha=0`` (float64) is deterministic."""
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.alpha != 0
        return tags


class ELMClassifier(ClassifierMixin, _ELMBase):
    """A random ReLU hidden layer and a least-squares output layer.

    ``alpha=0`` is the paper's W2 = pinv(relu(X W1 + b1)) Y, computed in float64. ``alpha>0``
    solves the ridge system by Cholesky on ``device``, in the primal (hidden_units x
    hidden_units) or the dual (n_samples x n_samples) form, whichever is smaller: in float32
    where the system's condition allows, else in float64 (``solver_`` says which; solver_for).

    ``hidden_draw``: ``scaled`` draws W1 from N(0, 1/n_features) and b1 from N(0, 1) with torch
    (the same on every device); ``original`` draws b1 then W1 from N(0, 1), unscaled, with
    numpy's RandomState(random_state), as the original code's RandomLayer did.
    ``targets``: ``zero_one`` (one-hot) or ``plus_minus_one`` (the original's LabelBinarizer(-1, 1)).
    """

    kind = "multiclass"

    _parameter_constraints: dict = {
        "hidden_units": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "hidden_draw": [StrOptions({"scaled", "original"})],
        "targets": [StrOptions({"zero_one", "plus_minus_one"})],
        "random_state": ["random_state"],
        "device": [str],
    }

    def __init__(
        self,
        hidden_units: int = 1200,
        alpha: float = 1.0,
        hidden_draw: str = "scaled",
        targets: str = "zero_one",
        random_state=None,
        device: str = "cpu",
    ):
        self.hidden_units = hidden_units
        self.alpha = alpha
        self.hidden_draw = hidden_draw
        self.targets = targets
        self.random_state = random_state
        self.device = device

    def fit(self, X, y) -> "ELMClassifier":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)

        def one_hot(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
            off = -1.0 if self.targets == "plus_minus_one" else 0.0
            targets = torch.full((len(codes), len(self.classes_)), off, dtype=dtype, device=device)
            targets[torch.arange(len(codes)), torch.as_tensor(codes, device=device)] = 1.0
            return targets

        return self._fit_outputs(X, one_hot)

    def decision_function(self, X) -> np.ndarray:
        """One column per class; for two classes, as scikit-learn's classifiers, one value per
        sample (positive for ``classes_[1]``)."""
        out = self._outputs(X)
        return out[:, 1] - out[:, 0] if len(self.classes_) == 2 else out

    def predict(self, X) -> np.ndarray:
        outputs = self._outputs(X)
        return self.classes_[outputs.argmax(axis=1)]


class ELMTagger(TaggerMixin, ELMClassifier):
    """The ELM for multilabel tagging: one output per tag, the same hidden layer (the same draw
    from ``random_state``) and the same ridge solve as ``ELMClassifier``, whose one-hot targets
    become each row's 0/1 tag vector (``targets=plus_minus_one``: -1/1). ``decision_function``
    returns the (n_samples, n_tags) outputs; ``predict`` says 1 where an output is past the
    middle of the two target values (0.5, or 0 for plus_minus_one)."""

    kind = "multilabel"

    def fit(self, X, y) -> "ELMTagger":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], multi_output=True)
        Y = check_tags(y)
        self.classes_ = np.arange(Y.shape[1])
        self.n_outputs_ = Y.shape[1]

        def tags(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
            targets = torch.as_tensor(Y, device=device).to(dtype)
            return targets.mul_(2).sub_(1) if self.targets == "plus_minus_one" else targets

        return self._fit_outputs(X, tags)

    def decision_function(self, X) -> np.ndarray:
        return self._outputs(X)

    def predict(self, X) -> np.ndarray:
        middle = 0.0 if self.targets == "plus_minus_one" else 0.5
        return (self._outputs(X) > middle).astype(np.uint8)


class ELMRegressor(RegressorMixin, _ELMBase):
    """The ELM for regression: the targets are standardized on the training rows (mean 0,
    variance 1) and solved for as one output, with the same hidden layer and ridge solve as
    ``ELMClassifier``; ``predict`` returns values in the targets' own units. (``targets`` of the
    classifier has no meaning here.)"""

    kind = "regression"

    _parameter_constraints: dict = {
        k: v for k, v in ELMClassifier._parameter_constraints.items() if k != "targets"
    }

    def __init__(
        self,
        hidden_units: int = 1200,
        alpha: float = 1.0,
        hidden_draw: str = "scaled",
        random_state=None,
        device: str = "cpu",
    ):
        self.hidden_units = hidden_units
        self.alpha = alpha
        self.hidden_draw = hidden_draw
        self.random_state = random_state
        self.device = device

    def fit(self, X, y) -> "ELMRegressor":
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True)
        y = check_targets(y)
        self.target_mean_, self.target_scale_ = standardizer(y)
        z = (y - self.target_mean_) / self.target_scale_

        def standardized(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
            return torch.as_tensor(z[:, None], device=device).to(dtype)

        return self._fit_outputs(X, standardized)

    def predict(self, X) -> np.ndarray:
        return self._outputs(X)[:, 0].astype(np.float64) * self.target_scale_ + self.target_mean_
