"""Extreme learning machine as a scikit-learn estimator (spec/method.md, "Classifiers")."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..devices import resolve_device
from .products import linear


def lower_gram(h: torch.Tensor, blocks: int = 4) -> torch.Tensor:
    """The lower block triangle of h'h, all that a Cholesky factorization reads: 10 of 16 block
    products instead of the full product. The blocks above the diagonal are left as zeros."""
    ht = h.T.contiguous()
    n = ht.shape[0]
    edges = [n * i // blocks for i in range(blocks + 1)]
    gram = torch.zeros(n, n, dtype=h.dtype, device=h.device)
    for i in range(blocks):
        rows = ht[edges[i] : edges[i + 1]]
        for j in range(i + 1):
            gram[edges[i] : edges[i + 1], edges[j] : edges[j + 1]] = linear(rows, ht[edges[j] : edges[j + 1]])
    return gram


class ELMClassifier(ClassifierMixin, BaseEstimator):
    """A random ReLU hidden layer and a least-squares output layer.

    ``alpha=0`` is the paper's W2 = pinv(relu(X W1 + b1)) Y, computed in float64. ``alpha>0``
    solves the ridge system by Cholesky in float32 on ``device``, in the primal
    (hidden_units x hidden_units) or the dual (n_samples x n_samples) form, whichever is smaller.
    """

    def __init__(self, hidden_units: int = 1200, alpha: float = 0.0, random_state=None, device: str = "cpu"):
        self.hidden_units = hidden_units
        self.alpha = alpha
        self.random_state = random_state
        self.device = device

    def _hidden(self, X: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        x = torch.as_tensor(X, dtype=dtype, device=self.device_)
        return linear(x, self.w1_.to(dtype), self.b1_.to(dtype)).relu_()

    def fit(self, X, y) -> "ELMClassifier":
        X, y = validate_data(self, X, y, dtype=np.float32)
        if self.hidden_units < 1 or self.alpha < 0:
            raise ValueError("ELMClassifier needs hidden_units >= 1 and alpha >= 0")
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.device_ = resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        gen = torch.Generator().manual_seed(seed)
        d = X.shape[1]
        # (hidden_units, n_features), as torch.nn.Linear's weight
        self.w1_ = torch.randn(self.hidden_units, d, generator=gen).div_(np.sqrt(d)).to(self.device_)
        self.b1_ = torch.randn(self.hidden_units, generator=gen).to(self.device_)
        dtype = torch.float64 if self.alpha == 0 else torch.float32
        h = self._hidden(X, dtype)
        targets = torch.zeros(len(codes), len(self.classes_), dtype=dtype, device=self.device_)
        targets[torch.arange(len(codes)), torch.as_tensor(codes, device=self.device_)] = 1.0
        if self.alpha == 0:
            self.w2_ = torch.linalg.pinv(h) @ targets
        elif h.shape[1] <= h.shape[0]:  # primal: (H'H + aI) W2 = H'Y
            gram = lower_gram(h)
            gram.diagonal().add_(self.alpha)
            self.w2_ = torch.cholesky_solve(h.T @ targets, torch.linalg.cholesky(gram))
        else:  # dual: W2 = H' (HH' + aI)^-1 Y
            gram = linear(h, h)
            gram.diagonal().add_(self.alpha)
            self.w2_ = h.T @ torch.cholesky_solve(targets, torch.linalg.cholesky(gram))
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "w2_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return (self._hidden(X, self.w2_.dtype) @ self.w2_).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]
