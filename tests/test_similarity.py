"""Debiased linear CKA, checked against its definition on cases with known answers and against
the formula written out on explicit Gram matrices (helpers/cka.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.cka import cka_by_the_formula, hsic_by_the_formula
from scipy.stats import ortho_group

from elm_audio.report import similarity
from elm_audio.report.similarity import cka, cka_biased, draws


@pytest.fixture(scope="module")
def related():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 12))
    y = np.tanh(x @ rng.normal(size=(12, 9))) + 0.5 * rng.normal(size=(120, 9))
    return x, y


def test_rotations_and_isotropic_scaling_leave_cka_at_one(related):
    x, _ = related
    q = ortho_group.rvs(12, random_state=1)
    assert cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    assert cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-10)
    assert cka_biased(x, 7.5 * x @ q) == pytest.approx(1.0, abs=1e-10)


def test_independent_features_score_near_zero_only_debiased():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(500, 100)), rng.normal(size=(500, 100))
    assert abs(cka(x, y)) < 0.05
    assert cka_biased(x, y) > 0.1  # the plain estimator: about d / (n + d) = 0.17 here, why it is not used


def test_matches_the_formula_on_explicit_gram_matrices(related):
    x, y = related
    assert cka(x, y) == pytest.approx(cka_by_the_formula(x, y), rel=1e-10)


def test_feature_space_and_gram_blocks_give_the_same_draws(related, monkeypatch):
    """A draw weights clips by how often it picked them; it equals the formula on the drawn rows
    with each clip's pairs with its own copies left out."""
    x, y = related
    w = draws(len(x), bootstrap=5, seed=3)
    features = cka(x, y, w)
    monkeypatch.setattr(similarity, "BLOCK", 37)
    monkeypatch.setattr(similarity, "_weighted_trace", lambda a, b, ww: _gram_route(a, b, ww))
    assert cka(x, y, w) == pytest.approx(features, rel=1e-9)
    assert features[0] == pytest.approx(cka(x, y))
    rows = np.repeat(np.arange(len(x)), w[:, 1].astype(int))
    same = rows[:, None] == rows[None, :]
    K, L = x[rows] @ x[rows].T, y[rows] @ y[rows].T
    K[same], L[same] = 0, 0  # then hsic_by_the_formula zeroes nothing more
    assert features[1] == pytest.approx(hsic_by_the_formula(K, L) / np.sqrt(hsic_by_the_formula(K, K) * hsic_by_the_formula(L, L)))


def _gram_route(a, b, w):
    n = len(a)
    out = np.zeros(w.shape[1])
    for s in range(0, n, similarity.BLOCK):
        h = (a[s : s + similarity.BLOCK] @ a.T) * (b[s : s + similarity.BLOCK] @ b.T)
        out += np.einsum("ib,ib->b", w[s : s + similarity.BLOCK], h @ w)
    return out
