import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.svm import SVC

from elm_audio.classifiers import ELMClassifier, build_classifier
from elm_audio.config import compose


def blobs(n=300, d=20, seed=0):
    X, y = make_blobs(n, d, centers=4, cluster_std=4.0, random_state=seed)
    names = np.array(["blues", "jazz", "rock", "pop"])
    return X.astype(np.float32), names[y]


def hidden(model, X):
    return np.maximum(X.astype(np.float64) @ model.w1_.double().numpy() + model.b1_.double().numpy(), 0)


def targets(model, y):
    return (y[:, None] == model.classes_[None, :]).astype(np.float64)


def test_elm_follows_scikit_learn_conventions():
    model = ELMClassifier(hidden_units=64, alpha=0.5, random_state=3)
    assert model.get_params() == {"hidden_units": 64, "alpha": 0.5, "random_state": 3, "device": "cpu"}
    twin = clone(model).set_params(hidden_units=32)
    assert twin.hidden_units == 32 and model.hidden_units == 64
    X, y = blobs()
    a = model.fit(X, y).predict(X)
    b = clone(model).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)  # seeded: refits agree
    assert set(a) <= set(y) and model.n_features_in_ == X.shape[1]


def test_alpha_zero_is_the_papers_pseudo_inverse():
    X, y = blobs()
    model = ELMClassifier(hidden_units=100, alpha=0.0, random_state=0).fit(X, y)
    w2 = np.linalg.pinv(hidden(model, X)) @ targets(model, y)
    np.testing.assert_allclose(model.decision_function(X), hidden(model, X) @ w2, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("units", [50, 600])  # fewer units than samples: primal; more: dual
def test_ridge_solution_is_the_closed_form_in_both_forms(units):
    X, y = blobs(n=300)
    model = ELMClassifier(hidden_units=units, alpha=2.0, random_state=0).fit(X, y)
    H = hidden(model, X)
    w2 = np.linalg.solve(H.T @ H + 2.0 * np.eye(units), H.T @ targets(model, y))
    np.testing.assert_allclose(model.decision_function(X), H @ w2, rtol=2e-3, atol=2e-3)


def test_elm_learns_separable_classes():
    X, y = blobs(n=600, seed=1)
    model = ELMClassifier(hidden_units=300, alpha=1.0, random_state=0).fit(X[:400], y[:400])
    assert np.mean(model.predict(X[400:]) == y[400:]) > 0.9


def test_elm_rejects_bad_hyper_parameters():
    with pytest.raises(ValueError, match="hidden_units"):
        ELMClassifier(hidden_units=0).fit(*blobs())


def test_classifier_configs_build_standardized_pipelines_from_their_keys():
    cfg = compose(["classifier=svm", "classifier.C=8", "classifier.kernel=linear"])
    pipe = build_classifier(cfg.classifier, seed=0)
    scaler, svc = pipe.steps[0][1], pipe.steps[-1][1]
    assert type(scaler).__name__ == "StandardScaler" and isinstance(svc, SVC)
    assert (svc.C, svc.kernel, svc.gamma) == (8.0, "linear", "auto")
    elm = build_classifier(compose(["classifier=elm", "classifier.hidden_units=250"]).classifier, seed=5)
    assert elm.steps[-1][1].get_params()["hidden_units"] == 250 and elm.steps[-1][1].random_state == 5
    raw = build_classifier(compose(["classifier=elm", "classifier.standardize=false"]).classifier, seed=0)
    assert len(raw.steps) == 1
