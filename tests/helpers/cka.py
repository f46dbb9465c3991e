"""Linear CKA written out by its formula on explicit Gram matrices: the reference the report's
CKA (elm_audio.report.similarity) is checked against."""

from __future__ import annotations

import numpy as np


def hsic_by_the_formula(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012), eq. 5, on explicit n x n Gram matrices."""
    n = len(K)
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))


def cka_by_the_formula(x: np.ndarray, y: np.ndarray) -> float:
    K, L = x @ x.T, y @ y.T
    return hsic_by_the_formula(K, L) / np.sqrt(hsic_by_the_formula(K, K) * hsic_by_the_formula(L, L))
