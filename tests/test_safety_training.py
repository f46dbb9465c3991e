"""Nothing read back from the cache runs code or lies, trainings of one key do not race, and
refits of the ELM agree (issue 23: findings 1, 2, 10, 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from elm_audio.classifiers import ELMClassifier


def test_elm_refits_of_an_ill_conditioned_system_agree_whatever_the_thread_count():
    """Clips far from the origin in two features: relu(X W1 + b1) is nearly of rank three and
    the ridge system's float32 rounding exceeds alpha. Whether float32 Cholesky failed used to
    depend on the threads' summation order, and the two paths gave different models."""
    rng = np.random.RandomState(0)
    X, y = rng.normal(loc=100, size=(100, 2)), rng.randint(0, 2, 100)
    threads = torch.get_num_threads()
    try:
        for seed in range(12):
            fits = []
            for n_threads in (1, 2, 1, 2):
                torch.set_num_threads(n_threads)
                model = ELMClassifier(hidden_units=100, random_state=seed).fit(X[:80], y[:80])
                fits.append((model.predict(X[80:]), model.decision_function(X[80:])))
            for predictions, decisions in fits[1:]:
                np.testing.assert_array_equal(predictions, fits[0][0], err_msg=f"random_state={seed}")
                np.testing.assert_allclose(decisions, fits[0][1], rtol=1e-7, atol=1e-9)
    finally:
        torch.set_num_threads(threads)


def test_a_well_conditioned_elm_keeps_the_fast_float32_solve():
    rng = np.random.RandomState(1)
    X = rng.standard_normal((400, 50)).astype(np.float32)
    model = ELMClassifier(hidden_units=300, alpha=1.0, random_state=0).fit(X, rng.randint(0, 4, 400))
    assert model.solver_ == "float32" and model.w2_.dtype == torch.float32
