"""The classifiers and probes for every task kind: multiclass labels, multilabel tags (scores from
``decision_function``), regression targets (``predict``), on small synthetic matrices."""

import inspect

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, r2_score, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from sklearn.utils.estimator_checks import parametrize_with_checks

from elm_audio.classifiers import (
    ESTIMATOR_KEYS,
    ELMClassifier,
    ELMRegressor,
    ELMTagger,
    KernelSVC,
    KernelSVCTagger,
    KernelSVR,
    KNNProbeClassifier,
    KNNProbeRegressor,
    KNNProbeTagger,
    LinearProbeClassifier,
    LinearProbeRegressor,
    LinearProbeTagger,
    MLPProbeClassifier,
    MLPProbeRegressor,
    MLPProbeTagger,
    fit_with_eval_set,
)
from elm_audio.classifiers.kinds import macro_average_precision
from elm_audio.config import build, compose

SMALL_MLP = {"hidden_size": 64, "max_epochs": 40, "patience": 10, "batch_size": 32, "validation_interval": 1, "learning_rate": 3e-3}


def data(n=500, d=24, tags=5, seed=0):
    """X with a learnable signal for each kind: labels, a 0/1 tag matrix (one tag never present
    in the first 300 rows), targets in units far from 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    labels = np.array(["blues", "jazz", "pop", "rock"])[np.argmax(X[:, :4] + 0.6 * rng.standard_normal((n, 4)), 1)]
    scores = X @ rng.standard_normal((d, tags)) + 1.5 * rng.standard_normal((n, tags))
    cuts = [np.quantile(scores[:, t], q) for t, q in enumerate(np.linspace(0.5, 0.85, tags))]
    Y = (scores > np.array(cuts)).astype(np.uint8)
    Y[:300, -1] = 0  # a tag the training rows never have
    target = 120.0 + 15.0 * (X[:, :6] @ rng.standard_normal(6)) / np.sqrt(6) + 3.0 * rng.standard_normal(n)
    return X, labels, Y, target


TAGGERS = [
    ELMTagger(hidden_units=200, random_state=0),
    KernelSVCTagger(),
    LinearProbeTagger(),
    MLPProbeTagger(random_state=0, **SMALL_MLP),
    KNNProbeTagger(),
]
REGRESSORS = [
    ELMRegressor(hidden_units=200, random_state=0),
    KernelSVR(),
    LinearProbeRegressor(),
    MLPProbeRegressor(random_state=0, **SMALL_MLP),
    KNNProbeRegressor(),
]
CLASSIFIERS = [
    ELMClassifier(hidden_units=200, random_state=0),
    KernelSVC(),
    LinearProbeClassifier(),
    MLPProbeClassifier(random_state=0, **SMALL_MLP),
    KNNProbeClassifier(),
]
name = lambda e: type(e).__name__


@pytest.mark.parametrize("tagger", TAGGERS, ids=name)
def test_taggers_score_every_tag_above_chance(tagger):
    X, _, Y, _ = data()
    model = make_pipeline(StandardScaler(), clone(tagger)).fit(X[:300], Y[:300])
    scores = model.decision_function(X[300:])
    assert scores.shape == (200, Y.shape[1]) and np.isfinite(scores).all()
    predicted = model.predict(X[300:])
    assert predicted.shape == scores.shape and set(np.unique(predicted)) <= {0, 1}
    learnable = Y[300:, :-1]
    ap = average_precision_score(learnable, scores[:, :-1], average=None)
    chance = learnable.mean(axis=0)  # the AP of a constant score
    assert (ap > chance + 0.15).all(), (ap, chance)
    assert roc_auc_score(learnable, scores[:, :-1], average="macro") > 0.75
    # the kind's metric, recomputed with scikit-learn over the tags with a positive clip
    assert macro_average_precision(Y[300:], scores) == pytest.approx(average_precision_score(Y[300:], scores, average="macro"))


@pytest.mark.parametrize("tagger", [t for t in TAGGERS if not isinstance(t, (ELMTagger, KNNProbeTagger, MLPProbeTagger))], ids=name)
def test_a_tag_never_present_in_training_scores_a_constant(tagger):
    X, _, Y, _ = data()
    scores = clone(tagger).fit(X[:300], Y[:300]).decision_function(X[300:])
    assert np.ptp(scores[:, -1]) == 0 and scores[0, -1] < 0
    Y1 = Y[:300].copy()
    Y1[:, 0] = 1  # and one always present
    scores = clone(tagger).fit(X[:300], Y1).decision_function(X[300:])
    assert np.ptp(scores[:, 0]) == 0 and scores[0, 0] > 0


@pytest.mark.parametrize("regressor", REGRESSORS, ids=name)
def test_regressors_predict_in_the_targets_units(regressor):
    X, _, _, target = data()
    model = make_pipeline(StandardScaler(), clone(regressor)).fit(X[:300], target[:300])
    predicted = model.predict(X[300:])
    assert predicted.shape == (200,) and predicted.dtype == np.float64
    assert abs(np.mean(predicted) - 120.0) < 5.0  # back in the targets' units
    floor = 0.3 if isinstance(regressor, KNNProbeRegressor) else 0.6
    assert r2_score(target[300:], predicted) > floor
    assert model.score(X[300:], target[300:]) == pytest.approx(r2_score(target[300:], predicted))


@pytest.mark.parametrize("classifier", CLASSIFIERS, ids=name)
def test_classifiers_learn_the_labels(classifier):
    X, labels, _, _ = data()
    model = make_pipeline(StandardScaler(), clone(classifier)).fit(X[:300], labels[:300])
    assert np.mean(model.predict(X[300:]) == labels[300:]) > 0.5  # chance 0.25


@pytest.mark.parametrize("make", [ELMTagger, ELMRegressor, MLPProbeTagger, MLPProbeRegressor, MLPProbeClassifier], ids=lambda c: c.__name__)
def test_seeded_fits_repeat_exactly_and_seeds_differ(make):
    X, labels, Y, target = data()
    y = {"multiclass": labels, "multilabel": Y, "regression": target}[make.kind][:300]
    kw = {"hidden_units": 100} if make.__name__.startswith("ELM") else SMALL_MLP
    out = lambda m: m.decision_function(X[300:]) if hasattr(m, "decision_function") else m.predict(X[300:])
    a, b, c = (out(make(random_state=s, **kw).fit(X[:300], y)) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_elm_tagger_draws_and_solves_as_the_elm_classifier():
    """One-hot tags are the classifier's targets: the same outputs, from the same hidden layer."""
    X, labels, _, _ = data()
    classes, codes = np.unique(labels[:300], return_inverse=True)
    onehot = np.eye(len(classes), dtype=np.uint8)[codes]
    for kw in ({"alpha": 1.0}, {"alpha": 0.0}, {"alpha": 0.5, "targets": "plus_minus_one"}):
        clf = ELMClassifier(hidden_units=150, random_state=7, **kw).fit(X[:300], labels[:300])
        tagger = ELMTagger(hidden_units=150, random_state=7, **kw).fit(X[:300], onehot)
        np.testing.assert_array_equal(tagger.w1_.numpy(), clf.w1_.numpy())
        np.testing.assert_array_equal(tagger.decision_function(X[300:]), clf.decision_function(X[300:]))


def test_the_elm_regressor_is_the_ridge_solution_on_standardized_targets():
    X, _, _, target = data()
    model = ELMRegressor(hidden_units=80, alpha=2.0, random_state=0).fit(X[:300], target[:300])
    H = lambda A: np.maximum(A.astype(np.float64) @ model.w1_.double().numpy().T + model.b1_.double().numpy(), 0)
    z = (target[:300] - target[:300].mean()) / target[:300].std()
    w2 = np.linalg.solve(H(X[:300]).T @ H(X[:300]) + 2.0 * np.eye(80), H(X[:300]).T @ z)
    expected = H(X[300:]) @ w2 * target[:300].std() + target[:300].mean()
    np.testing.assert_allclose(model.predict(X[300:]), expected, rtol=1e-4)


def test_svm_tags_are_one_svc_each_on_the_shared_kernel():
    from elm_audio.classifiers import svm

    X, _, Y, _ = data()
    svm._GRAM_CACHE.clear()
    tagger = KernelSVCTagger(C=4.0, dtype="float64").fit(X[:300], Y[:300])
    assert len(svm._GRAM_CACHE) == 1  # one kernel matrix for every tag
    for t in range(Y.shape[1] - 1):
        alone = KernelSVC(C=4.0, dtype="float64").fit(X[:300], Y[:300, t])
        np.testing.assert_allclose(tagger.decision_function(X[300:])[:, t], alone.decision_function(X[300:]), atol=1e-9)


def test_kernel_svr_is_libsvms_svr_on_standardized_targets():
    X, _, _, target = data()
    mean, std = target[:300].mean(), target[:300].std()
    ours = KernelSVR(C=3.0, epsilon=0.2, dtype="float64").fit(X[:300], target[:300]).predict(X[300:])
    plain = SVR(C=3.0, epsilon=0.2, gamma=1 / X.shape[1]).fit(X[:300], (target[:300] - mean) / std).predict(X[300:])
    np.testing.assert_allclose(ours, plain * std + mean, atol=1e-5)


def test_the_linear_probe_is_scikit_learns_logistic_regression_and_ridge():
    X, labels, Y, target = data()
    Xs = StandardScaler().fit_transform(X[:300]).astype(np.float64)
    for C in (0.05, 1.0):
        ours = LinearProbeClassifier(C=C, tol=1e-6).fit(Xs, labels[:300])
        plain = LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(Xs, labels[:300])
        np.testing.assert_allclose(ours.predict_proba(Xs), plain.predict_proba(Xs), atol=2e-3)
        tags = LinearProbeTagger(C=C, tol=1e-6).fit(Xs, Y[:300])
        for t in range(Y.shape[1] - 1):
            one = LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(Xs, Y[:300, t])
            np.testing.assert_allclose(tags.coef_[t], one.coef_[0], atol=2e-3)
        binary = LinearProbeClassifier(C=C, tol=1e-6).fit(Xs, Y[:300, 0])
        one = LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(Xs, Y[:300, 0])
        np.testing.assert_allclose(binary.decision_function(Xs), one.decision_function(Xs), atol=5e-3)
        ridge = Ridge(alpha=1 / (2 * C)).fit(Xs, target[:300])
        np.testing.assert_allclose(LinearProbeRegressor(C=C).fit(Xs, target[:300]).predict(Xs), ridge.predict(Xs), rtol=1e-9)
    wide = np.random.default_rng(1).standard_normal((40, 90))  # more features than rows: the dual form
    ridge = Ridge(alpha=0.5).fit(wide, target[:40])
    np.testing.assert_allclose(LinearProbeRegressor(C=1.0).fit(wide, target[:40]).predict(wide), ridge.predict(wide), rtol=1e-8)


def test_the_knn_classifier_is_the_knn_probe_of_before():
    """protocols.knn_probe: KNeighborsClassifier by cosine on standardized features, k capped."""
    X, labels, Y, target = data()
    for k in (5, 1000):
        before = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, 300), metric="cosine", algorithm="brute"))
        now = make_pipeline(StandardScaler(), KNNProbeClassifier(n_neighbors=k))
        np.testing.assert_array_equal(now.fit(X[:300], labels[:300]).predict(X[300:]), before.fit(X[:300], labels[:300]).predict(X[300:]))
    model = KNNProbeTagger(n_neighbors=4).fit(X[:300], Y[:300])
    nearest = KNeighborsClassifier(n_neighbors=4, metric="cosine", algorithm="brute").fit(X[:300], labels[:300])
    rows = nearest.kneighbors(X[300:305], return_distance=False)
    np.testing.assert_allclose(model.decision_function(X[300:305]), Y[:300][rows].mean(axis=1))
    np.testing.assert_allclose(KNNProbeRegressor(n_neighbors=4).fit(X[:300], target[:300]).predict(X[300:305]), target[:300][rows].mean(axis=1))


def test_the_ridge_probe_on_float32_rows_is_scikit_learns_float32_ridge():
    """Float32 rows: the products in float32, as Ridge's. Both fits round in float32 (2^-24, 6e-8
    relative) through sums of 300 rows and a well-conditioned 24-feature system; their predictions
    differed by at most 2.7e-7 relative: rtol 2e-6 is about 30 float32 roundings, far below any
    difference of method (a wrong alpha or intercept moves them by 1e-3 or more)."""
    X, _, _, target = data()
    Xs = StandardScaler().fit_transform(X[:300]).astype(np.float32)
    for C in (0.05, 1.0):
        ours = LinearProbeRegressor(C=C).fit(Xs, target[:300])
        ridge = Ridge(alpha=1 / (2 * C)).fit(Xs, target[:300])
        assert ridge.coef_.dtype == np.float32 and ours.predict(Xs).dtype == np.float64
        np.testing.assert_allclose(ours.predict(Xs), ridge.predict(Xs), rtol=2e-6)
        in_float64 = LinearProbeRegressor(C=C).fit(Xs.astype(np.float64), target[:300])
        gap = np.abs(ours.coef_ - in_float64.coef_).max() / np.abs(in_float64.coef_).max()
        assert 1e-10 < gap < 1e-5  # float32 arithmetic, not float64 after a copy
    wide = np.random.default_rng(1).standard_normal((40, 90)).astype(np.float32)  # the dual form
    ridge = Ridge(alpha=0.5).fit(wide, target[:40])
    np.testing.assert_allclose(LinearProbeRegressor(C=1.0).fit(wide, target[:40]).predict(wide), ridge.predict(wide), rtol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda t: t.__name__)
def test_the_ridge_probes_torch_path_solves_as_its_cpu_path(dtype):
    """Other devices than the CPU take torch's products and factorization: the same solution."""
    from elm_audio.classifiers.linear import _lift, _ridge_in_torch, _ridge_on_cpu

    rng = np.random.default_rng(3)
    for n, d in ((300, 24), (40, 90)):  # the primal and the dual form
        X = (rng.standard_normal((n, d)) + 2.0).astype(dtype)
        z = rng.standard_normal(n).astype(dtype)
        shift = X.mean(axis=0, dtype=np.float64).astype(dtype)
        cpu = _ridge_on_cpu(X, shift, z, 0.3)
        torch_path = _ridge_in_torch(torch.from_numpy(X - shift), torch.from_numpy(z), 0.3, _lift(X.dtype)).numpy()
        np.testing.assert_allclose(torch_path, cpu, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6 if dtype == np.float32 else 0)


def test_a_float32_ridge_system_its_float32_factorization_cannot_take_is_solved_in_float64():
    from elm_audio.classifiers.linear import _cholesky_solve_on_cpu

    gram = np.ones((2, 2), dtype=np.float32)  # singular; + 1e-9 on its diagonal is lost in float32
    solved = _cholesky_solve_on_cpu(gram, np.array([1.0, 2.0], dtype=np.float32), 1e-9, 1e-6)
    np.testing.assert_allclose(solved, np.linalg.solve(np.ones((2, 2)) + 1e-9 * np.eye(2), [1.0, 2.0]), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda t: t.__name__)
def test_the_knn_neighbours_are_scikit_learns_in_the_inputs_dtype(dtype):
    X, _, Y, target = data()
    X = StandardScaler().fit_transform(X).astype(dtype)
    for k in (4, 1000):
        ours = KNNProbeRegressor(n_neighbors=k).fit(X[:300], target[:300])
        plain = KNeighborsRegressor(n_neighbors=min(k, 300), metric="cosine", algorithm="brute").fit(X[:300], target[:300])
        distances, rows = ours.kneighbors(X[300:])
        plain_distances, plain_rows = plain.kneighbors(X[300:])
        assert distances.dtype == plain_distances.dtype == dtype and ours._fit_X.dtype == dtype  # not copied to float64
        if k < 300:  # all 300 rows: their order among equal distances is arbitrary
            np.testing.assert_array_equal(rows, plain_rows)
        np.testing.assert_allclose(distances, plain_distances, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
        np.testing.assert_allclose(ours.predict(X[300:]), plain.predict(X[300:]), rtol=1e-12)
    tagger = KNNProbeTagger(n_neighbors=7).fit(X[:300], Y[:300])
    rows = KNeighborsRegressor(n_neighbors=7, metric="cosine", algorithm="brute").fit(X[:300], target[:300]).kneighbors(X[300:])[1]
    np.testing.assert_array_equal(tagger.decision_function(X[300:]), Y[:300][rows].mean(axis=1))


def test_an_all_zero_row_is_at_cosine_distance_one_as_in_scikit_learn():
    """sklearn.preprocessing.normalize leaves an all-zero row zero: its cosine similarity to every
    row is 0, its distance 1, so it ranks among the neighbours of a row after every row at a
    positive cosine. With 200 of 300 neighbours, the zero training row is among every query's."""
    X, labels, _, _ = data()
    X = StandardScaler().fit_transform(X)
    X[10] = 0.0  # a training row
    X[305] = 0.0  # a query
    for dtype in (np.float32, np.float64):
        Xd = X.astype(dtype)
        ours = KNNProbeClassifier(n_neighbors=200).fit(Xd[:300], labels[:300])
        plain = KNeighborsClassifier(n_neighbors=200, metric="cosine", algorithm="brute").fit(Xd[:300], labels[:300])
        distances, rows = ours.kneighbors(Xd[300:])
        plain_distances, plain_rows = plain.kneighbors(Xd[300:])
        assert np.isfinite(distances).all() and (distances[5] == 1.0).all()  # the zero query: every row at 1
        others = np.arange(len(rows)) != 5
        assert (rows[others] == 10).any(axis=1).all()
        np.testing.assert_array_equal(np.sort(rows[others], axis=1), np.sort(plain_rows[others], axis=1))
        np.testing.assert_allclose(distances, plain_distances, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ours.predict(Xd[300:][others]), plain.predict(Xd[300:][others]))
        np.testing.assert_allclose(ours.predict_proba(Xd[300:][others]), plain.predict_proba(Xd[300:][others]))


def test_knn_votes_tie_to_the_smallest_class_as_scikit_learn():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    labels = np.array(["rock", "jazz", "jazz", "rock"])  # 2 and 2 among 4 neighbours
    query = np.array([[1.0, 0.05]])
    ours = KNNProbeClassifier(n_neighbors=4).fit(X, labels)
    plain = KNeighborsClassifier(n_neighbors=4, metric="cosine", algorithm="brute").fit(X, labels)
    assert ours.predict(query)[0] == plain.predict(query)[0] == "jazz"
    np.testing.assert_array_equal(ours.predict_proba(query), [[0.5, 0.5]])


def test_mlp_early_stopping_stops_after_patience_and_keeps_the_best_validation():
    X, _, Y, _ = data(n=400, d=60)
    model = MLPProbeTagger(hidden_size=256, max_epochs=300, patience=3, validation_interval=2, batch_size=64,
                           learning_rate=3e-3, random_state=0)  # fmt: skip
    model.fit(X[:150], Y[:150], eval_set=(X[150:], Y[150:]))  # few rows, many units: it overfits
    epochs = [e for e, _ in model.validation_scores_]
    assert model.stopped_early_ and model.n_epochs_ < 300 and epochs == list(range(2, model.n_epochs_ + 1, 2))
    scores = [s for _, s in model.validation_scores_]
    best = int(np.argmax(scores))  # the first of the best
    assert model.best_epoch_ == epochs[best] and model.best_score_ == scores[best]
    assert len(scores) - 1 - best == 3  # stopped after three validations without improvement
    # the model kept is the best epoch's: its validation mAP, recomputed with scikit-learn
    recomputed = average_precision_score(Y[150:], model.decision_function(X[150:]), average="macro")
    assert recomputed == pytest.approx(model.best_score_, abs=1e-6)


@pytest.mark.parametrize("make", [MLPProbeClassifier, MLPProbeRegressor], ids=lambda c: c.__name__)
def test_mlp_without_a_validation_split_holds_out_a_seeded_fraction(make):
    X, labels, _, target = data()
    y = labels if make.kind == "multiclass" else target
    model = make(random_state=0, validation_fraction=0.2, **SMALL_MLP).fit(X[:300], y[:300])
    assert len(model.validation_scores_) >= 1 and np.isfinite(model.best_score_)
    assert 1 <= model.best_epoch_ <= model.n_epochs_ <= SMALL_MLP["max_epochs"]


def test_an_eval_set_reaches_the_mlp_standardized_as_the_training_rows():
    X, labels, _, _ = data()
    X = X * 50 + 7  # far from standardized
    pipe = make_pipeline(StandardScaler(), MLPProbeClassifier(random_state=0, **SMALL_MLP))
    fit_with_eval_set(pipe, X[:300], labels[:300], eval_set=(X[300:400], labels[300:400]))
    mlp = pipe.steps[-1][1]
    assert mlp.best_score_ == pytest.approx(np.mean(pipe.predict(X[300:400]) == labels[300:400]))
    plain = fit_with_eval_set(make_pipeline(StandardScaler(), KernelSVC()), X[:300], labels[:300], (X[300:], labels[300:]))
    assert np.mean(plain.predict(X[300:]) == labels[300:]) > 0.5  # estimators without eval_set just fit


@pytest.mark.parametrize("estimator", TAGGERS + REGRESSORS + CLASSIFIERS, ids=name)
def test_get_params_and_clone_round_trip(estimator):
    params = estimator.get_params()
    twin = clone(estimator)
    assert twin.get_params() == params and twin is not estimator
    assert type(estimator)(**params).get_params() == params
    assert set(params) == set(inspect.signature(type(estimator)).parameters)
    assert "random_state" in params  # components.build_estimator passes the run's seed to each
    if estimator.kind == "regression":
        assert is_regressor(estimator)
    else:
        assert is_classifier(estimator)
        assert estimator.__sklearn_tags__().classifier_tags.multi_label == (estimator.kind == "multilabel")


@pytest.mark.parametrize("tagger", [ELMTagger(), LinearProbeTagger(), KernelSVCTagger(), MLPProbeTagger(), KNNProbeTagger()], ids=name)
def test_taggers_refuse_labels_and_regressors_refuse_nan(tagger):
    X, labels, _, target = data(n=40)
    with pytest.raises(ValueError, match="matrix of 0/1"):
        clone(tagger).fit(X, labels)
    regressor = {"ELMTagger": ELMRegressor(), "LinearProbeTagger": LinearProbeRegressor(), "KernelSVCTagger": KernelSVR(),
                 "MLPProbeTagger": MLPProbeRegressor(), "KNNProbeTagger": KNNProbeRegressor()}[name(tagger)]  # fmt: skip
    bad = target.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        regressor.fit(X, bad)


@pytest.mark.parametrize("group", ["svm", "elm", "linear", "mlp"])
def test_each_kinds_node_builds_its_class_with_the_class_defaults(group):
    """Every estimator node of a classifier YAML: the class of the kind, built with the run's
    device and seed, and each value the YAML gives equal to the class's default."""
    cfg = compose([f"classifier={group}"]).classifier
    raw = OmegaConf.to_container(cfg, resolve=False)
    assert set(ESTIMATOR_KEYS.values()) <= set(raw)
    for kind, key in ESTIMATOR_KEYS.items():
        estimator = build(cfg[key], random_state=5)
        assert estimator.kind == kind and estimator.random_state == 5
        estimator._validate_params()
        defaults = {k: p.default for k, p in inspect.signature(type(estimator)).parameters.items()}
        for param, given in raw[key].items():
            if param == "_target_":
                continue
            if isinstance(given, str) and given.startswith("${.."):
                given = raw[given[4:-1]]
            if isinstance(given, str) and given.startswith("${"):
                continue
            assert defaults[param] == given, f"classifier={group} {key}: {param} is {given!r} in the YAML, {defaults[param]!r} in the class"
    for kind, keys in (raw.get("ignores") or {}).items():
        assert kind in ESTIMATOR_KEYS and all(k in raw for k in keys)
        node = raw[ESTIMATOR_KEYS[kind]]  # an ignored key does not reach that kind's estimator
        assert not any(v == f"${{..{k}}}" for k in keys for v in node.values())
    for kind, space in (raw.get("kind_search_space") or {}).items():
        assert all(k.removeprefix("classifier.") not in (raw.get("ignores") or {}).get(kind, []) for k in space)


def test_the_mlp_paper_grid_is_hearevals():
    grid = OmegaConf.to_container(compose(["classifier=mlp"]).classifier.paper_grid)
    assert grid == [{
        "classifier.hidden_layers": [1, 2], "classifier.hidden_size": [1024], "classifier.dropout": [0.1],
        "classifier.learning_rate": [3.2e-3, 1e-3, 3.2e-4, 1e-4], "classifier.initialization": ["xavier_uniform", "xavier_normal"],
    }]  # fmt: skip
    cfg = compose(["classifier=mlp"]).classifier
    assert (cfg.patience, cfg.max_epochs, cfg.batch_size, cfg.validation_interval) == (20, 500, 1024, 3)


def test_the_mlp_is_hearevals_network():
    from elm_audio.classifiers.mlp import SeededDropout

    X, labels, _, _ = data()
    model = MLPProbeClassifier(hidden_size=16, hidden_layers=2, max_epochs=1, random_state=0).fit(X[:300], labels[:300])
    kinds = [type(m).__name__ for m in model.network_]
    assert kinds == ["Linear", "BatchNorm1d", "SeededDropout", "ReLU"] * 2 + ["Linear"]
    assert all(m.p == 0.1 for m in model.network_ if isinstance(m, SeededDropout))
    assert model.network_[-1].out_features == 4


@parametrize_with_checks(
    [
        LinearProbeClassifier(),
        LinearProbeRegressor(),
        KNNProbeClassifier(n_neighbors=3),
        KNNProbeRegressor(n_neighbors=3),
        ELMRegressor(hidden_units=30),
        KernelSVR(dtype="float64"),
        MLPProbeRegressor(hidden_size=8, max_epochs=3, validation_interval=1),
    ],
    # three epochs (to keep the checks quick) do not reach the score this check asks for
    expected_failed_checks=lambda e: {"check_regressors_train": "a 3-epoch MLP"} if isinstance(e, MLPProbeRegressor) else {},
)
def test_the_probes_pass_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_torch_probes_run_on_cuda():
    X, labels, Y, target = data()
    for make, y in ((LinearProbeTagger, Y), (MLPProbeTagger, Y), (ELMTagger, Y), (KernelSVCTagger, Y), (LinearProbeClassifier, labels),
                    (MLPProbeRegressor, target), (LinearProbeRegressor, target), (ELMRegressor, target), (KernelSVR, target)):  # fmt: skip
        kw = SMALL_MLP if make.__name__.startswith("MLP") else {}
        cpu = make(device="cpu", random_state=0, **kw).fit(X[:300], y[:300])
        cuda = make(device="cuda", random_state=0, **kw).fit(X[:300], y[:300])
        out = (lambda m: m.decision_function(X[300:])) if make.kind == "multilabel" else (lambda m: m.predict(X[300:]))
        if make.kind == "multilabel":
            a, b = macro_average_precision(Y[300:], out(cpu)), macro_average_precision(Y[300:], out(cuda))
        elif make.kind == "regression":
            a, b = r2_score(target[300:], out(cpu)), r2_score(target[300:], out(cuda))
        else:
            a, b = np.mean(out(cpu) == labels[300:]), np.mean(out(cuda) == labels[300:])
        assert abs(a - b) < 0.05, make.__name__
