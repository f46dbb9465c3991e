import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from elm_audio.classifiers import ELMClassifier, KernelSVC
from elm_audio.config import compose
from elm_audio.settings.components import build_classifier


def blobs(n=300, d=20, seed=0):
    X, y = make_blobs(n, d, centers=4, cluster_std=4.0, random_state=seed)
    names = np.array(["blues", "jazz", "rock", "pop"])
    return X.astype(np.float32), names[y]


def hidden(model, X):
    return np.maximum(X.astype(np.float64) @ model.w1_.double().numpy().T + model.b1_.double().numpy(), 0)


def targets(model, y):
    return (y[:, None] == model.classes_[None, :]).astype(np.float64)


def test_elm_follows_scikit_learn_conventions():
    model = ELMClassifier(hidden_units=64, alpha=0.5, random_state=3)
    assert model.get_params() == {
        "hidden_units": 64, "alpha": 0.5, "hidden_draw": "scaled", "targets": "zero_one", "random_state": 3, "device": "cpu",
    }  # fmt: skip
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


@pytest.mark.parametrize(
    "params,name",
    [({"hidden_units": 0}, "hidden_units"), ({"alpha": -1.0}, "alpha"), ({"targets": "onehot"}, "targets")],
)
def test_elm_rejects_bad_hyper_parameters_by_name(params, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter of ELMClassifier"):
        ELMClassifier(**params).fit(*blobs())


@parametrize_with_checks(
    [
        ELMClassifier(hidden_units=50),
        ELMClassifier(hidden_units=50, alpha=0.0),
        ELMClassifier(hidden_units=30, alpha=0.0, hidden_draw="original", targets="plus_minus_one"),
        KernelSVC(),
        KernelSVC(kernel="linear", dtype="float64"),
    ],
)
def test_the_estimators_pass_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("name", ["svm", "elm"])
def test_the_classifier_yaml_and_the_class_share_their_defaults(name):
    """Each hyper-parameter the YAML gives a value is the class's default too (interpolated
    values, such as the run's device, excepted): one source of truth, whichever is read."""
    import inspect

    from omegaconf import OmegaConf

    cfg = compose([f"classifier={name}"]).classifier
    cls = build_classifier(cfg, seed=0).steps[-1][1].__class__
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    raw = OmegaConf.to_container(cfg, resolve=False)
    checked = 0
    for key, given in raw["estimator"].items():
        if key == "_target_":
            continue
        if isinstance(given, str) and given.startswith("${.."):  # the group's own key
            given = raw[given[4:-1]]
        if isinstance(given, str) and given.startswith("${"):
            continue
        assert defaults[key] == given, f"classifier={name}: {key} is {given!r} in the YAML, {defaults[key]!r} in {cls.__name__}"
        checked += 1
    assert checked >= 2


def test_an_elm_whose_float32_system_is_singular_is_solved_in_float64():
    """Two samples that are the same point: with a tiny alpha the system's condition is beyond
    float32's precision, so the fit solves it in float64 and still gives the ridge solution."""
    X = np.array([[1.0, 2.0], [1.0, 2.0], [-1.0, 0.5]], dtype=np.float32)
    y = np.array(["a", "a", "b"])
    model = ELMClassifier(hidden_units=40, alpha=1e-12, random_state=0).fit(X, y)
    assert np.isfinite(model.w2_.numpy()).all() and model.solver_ == "float64"
    np.testing.assert_array_equal(model.predict(X), y)


def test_classifier_configs_build_standardized_pipelines_from_their_keys():
    cfg = compose(["classifier=svm", "classifier.C=8", "classifier.kernel=linear"])
    pipe = build_classifier(cfg.classifier, seed=0)
    scaler, svc = pipe.steps[0][1], pipe.steps[-1][1]
    assert type(scaler).__name__ == "StandardScaler" and isinstance(svc, KernelSVC)
    assert (svc.C, svc.kernel, svc.gamma) == (8.0, "linear", "auto")
    elm = build_classifier(compose(["classifier=elm", "classifier.hidden_units=250"]).classifier, seed=5)
    assert elm.steps[-1][1].get_params()["hidden_units"] == 250 and elm.steps[-1][1].random_state == 5
    raw = build_classifier(compose(["classifier=elm", "classifier.standardize=false"]).classifier, seed=0)
    assert len(raw.steps) == 1


def features_like(n=900, d=600, seed=0, class_sep=1.5):
    """Many noisy dimensions, ten classes: what the front-ends hand the classifiers."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n, d, n_informative=40, n_redundant=60, n_classes=10, n_clusters_per_class=2,
                               class_sep=class_sep, random_state=seed)  # fmt: skip
    X = (X - X.mean(0)) / X.std(0)
    return X[: n * 4 // 5], y[: n * 4 // 5], X[n * 4 // 5 :], y[n * 4 // 5 :]


@pytest.mark.parametrize("kernel,gamma", [("rbf", "auto"), ("rbf", 0.0005), ("rbf", "scale"), ("linear", "auto")])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("features", [np.float64, np.float32])  # float32: what the extracted features are
def test_kernel_svc_predicts_as_libsvms_own_kernel_does(kernel, gamma, dtype, features):
    Xtr, ytr, Xte, yte = features_like()
    Xtr, Xte = Xtr.astype(features), Xte.astype(features)
    plain = SVC(C=2.0, kernel=kernel, gamma=gamma).fit(Xtr, ytr)
    fast = KernelSVC(C=2.0, kernel=kernel, gamma=gamma, dtype=dtype).fit(Xtr, ytr)
    agree = np.mean(plain.predict(Xte) == fast.predict(Xte))
    assert agree >= 0.99
    assert abs(np.mean(plain.predict(Xte) == yte) - np.mean(fast.predict(Xte) == yte)) <= 0.005
    if dtype == "float64":
        np.testing.assert_allclose(fast.decision_function(Xte), plain.decision_function(Xte), atol=1e-6)


def test_kernel_svc_reuses_the_kernel_matrix_of_an_earlier_fit_with_the_same_data_and_gamma():
    from elm_audio.classifiers import svm

    Xtr, ytr, _, _ = features_like(n=300, d=200)
    svm._GRAM_CACHE.clear()
    KernelSVC(C=0.1, gamma=0.01).fit(Xtr, ytr)
    KernelSVC(C=8.0, gamma=0.01).fit(Xtr, ytr)  # another C: same matrix
    assert len(svm._GRAM_CACHE) == 1
    KernelSVC(C=8.0, gamma=0.02).fit(Xtr, ytr)
    KernelSVC(C=8.0, gamma=0.02).fit(Xtr[:-1], ytr[:-1])
    assert len(svm._GRAM_CACHE) == 3


def test_kernel_svc_refuses_other_kernels_by_name():
    with pytest.raises(ValueError, match="'kernel' parameter of KernelSVC"):
        KernelSVC(kernel="poly").fit(*blobs())


def faithful_elm(Xtr, ytr, Xte, hidden, seed):
    """The original code's ELM: float64 pseudo-inverse of the ReLU hidden layer."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((Xtr.shape[1], hidden)) / np.sqrt(Xtr.shape[1])
    b = rng.standard_normal(hidden)
    classes = np.unique(ytr)
    H = np.maximum(Xtr @ w + b, 0)
    beta = np.linalg.pinv(H) @ (ytr[:, None] == classes[None, :]).astype(float)
    return classes[(np.maximum(Xte @ w + b, 0) @ beta).argmax(1)]


def test_the_default_ridge_elm_is_as_accurate_as_the_faithful_pseudo_inverse():
    from elm_audio.config import compose

    Xtr, ytr, Xte, yte = features_like(n=2000, d=400, class_sep=3.0)
    cfg = compose(["classifier=elm", "classifier.hidden_units=500"]).classifier
    assert cfg.alpha > 0  # the default solves the ridge system, in float32
    ours = [np.mean(build_classifier(cfg, seed=s).fit(Xtr, ytr).predict(Xte) == yte) for s in range(4)]
    paper = [np.mean(faithful_elm((Xtr - Xtr.mean(0)) / Xtr.std(0), ytr, (Xte - Xtr.mean(0)) / Xtr.std(0), 500, s) == yte) for s in range(4)]
    assert np.mean(paper) > 0.5  # a problem the ELM can learn
    assert np.mean(ours) >= np.mean(paper) - 0.02


def test_the_run_device_reaches_both_classifiers():
    from elm_audio.config import compose

    for name in ("svm", "elm"):
        estimator = build_classifier(compose([f"classifier={name}", "device=cpu"]).classifier, seed=0).steps[-1][1]
        assert estimator.device == "cpu"
        if not torch.cuda.is_available():
            cuda = build_classifier(compose([f"classifier={name}", "device=cuda"]).classifier, seed=0)
            with pytest.raises(ValueError, match="device=cuda: CUDA is not available"):
                cuda.fit(*blobs())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("view", ["strided", "transposed"])  # transposed: the ELM's h'h as gram(h.T)
def test_the_kernels_gram_matrix_is_the_product_of_the_rows_with_themselves(dtype, view):
    from elm_audio.products import gram

    gen = torch.Generator().manual_seed(0)
    if view == "strided":
        x = torch.randn(300, 500, generator=gen, dtype=dtype)[:, ::2]
    else:  # Fortran order
        x = torch.randn(250, 300, generator=gen, dtype=dtype).T
    exact = x.double() @ x.double().T
    out = gram(x)
    assert out.shape == (300, 300) and out.dtype == dtype
    assert torch.equal(out, out.T)  # both triangles, as libsvm reads the whole matrix
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (out.double() - exact).abs().max() <= tol * exact.abs().max()


@pytest.mark.parametrize("product", ["linear", "onednn_linear"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_the_classifiers_product_is_torch_linear_in_float32_arithmetic(product, dtype, with_bias):
    from elm_audio import products

    linear = getattr(products, product)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 500, generator=gen, dtype=dtype)
    weight = torch.randn(700, 1000, generator=gen, dtype=dtype)[:, ::2]  # a strided view
    bias = torch.randn(700, generator=gen, dtype=dtype) if with_bias else None
    exact = x.double() @ weight.double().T + (bias.double() if with_bias else 0)
    out = linear(x, weight, bias)
    assert out.shape == (300, 700) and out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (out.double() - exact).abs().max() <= tol * exact.abs().max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_a_reused_weight_keeps_its_values_in_the_layout_its_products_take(dtype):
    """products.product_weight: bf16 weights as (k, m) row-major memory behind the same (m, k)
    view, products with it those of the weight as it was; float32 weights untouched."""
    from elm_audio.products import linear, product_weight

    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 38, generator=gen).to(dtype)
    x = torch.randn(50, 38, generator=gen).to(dtype)
    packed = product_weight(weight)
    assert torch.equal(packed, weight) and packed.shape == weight.shape
    if dtype == torch.float32:
        assert packed is weight
    else:
        assert packed.T.is_contiguous() and not packed.is_contiguous()
    exact = x.double() @ weight.double().T
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16 products are summed in float32
    assert (linear(x, packed).double() - exact).abs().max() <= tol * exact.abs().max()


@pytest.mark.parametrize("rows", [40, 640, 7919])  # under 64; a multiple of 64; 123 x 64 + 47
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_gradient_product_is_the_rows_sum_x_transposed_times_g(rows, dtype):
    from elm_audio.products import transposed_product

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 2 * 86, generator=gen, dtype=dtype)[:, ::2]  # a strided view
    g = torch.randn(rows, 128, generator=gen, dtype=dtype)
    exact = x.double().T @ g.double()
    out = transposed_product(x, g)
    assert out.shape == (86, 128) and out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (out.double() - exact).abs().max() <= tol * exact.abs().max()
