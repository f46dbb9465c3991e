import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from elm_audio.datasets import Clip, ClipIndex
from elm_audio.evaluation.protocols import evaluate, make_splits


def fold_index(n_folds=4, per_fold=6):
    clips = [
        Clip(f"c{f}_{i}", f"/x/c{f}_{i}.wav", "ab"[i % 2], fold=f) for f in range(1, n_folds + 1) for i in range(per_fold)
    ]
    return ClipIndex("toy", clips, "folds")


def test_honest_folds_keep_each_test_fold_out_of_training_and_validation():
    index = fold_index()
    fold = np.array([c.fold for c in index.clips])
    splits = make_splits(index, "honest")
    assert [s.name for s in splits] == ["fold1", "fold2", "fold3", "fold4"]
    for k, s in enumerate(splits, start=1):
        assert set(fold[s.test]) == {k}
        assert set(fold[s.validation]) == {k % 4 + 1}  # the next fold, wrapping around
        assert k not in set(fold[s.train]) and (k % 4 + 1) not in set(fold[s.train])
        assert len(s.train) + len(s.validation) + len(s.test) == len(index.clips)


def test_paper_folds_train_on_all_other_folds_without_validation():
    index = fold_index()
    fold = np.array([c.fold for c in index.clips])
    for k, s in enumerate(make_splits(index, "paper"), start=1):
        assert s.validation is None
        assert set(fold[s.test]) == {k} and set(fold[s.train]) == {1, 2, 3, 4} - {k}


def test_partitions_give_one_split():
    clips = [Clip(f"c{i}", "", "ab"[i % 2], partition=("train", "validation", "test")[i % 3]) for i in range(12)]
    (split,) = make_splits(ClipIndex("toy", clips, "partitions"), "honest")
    assert [clips[i].partition for i in split.train] == ["train"] * 4
    assert [clips[i].partition for i in split.validation] == ["validation"] * 4
    assert [clips[i].partition for i in split.test] == ["test"] * 4


def test_unknown_mode_names_the_key():
    with pytest.raises(ValueError, match="protocol.mode"):
        make_splits(fold_index(), "cheat")


def test_evaluation_scores_each_fold_on_its_own_test_clips():
    index = fold_index(n_folds=6)
    labels = np.array([c.label for c in index.clips])
    fold = np.array([c.fold for c in index.clips])
    # fold 3's clips carry the opposite of the signal; trained on a majority of clean folds,
    # a stump fails there and nowhere else
    X = np.where(labels == "a", 0.0, 1.0)[:, None]
    X[fold == 3] = 1.0 - X[fold == 3]
    stump = lambda: DecisionTreeClassifier(max_depth=1)  # noqa: E731
    m = evaluate(stump, X, labels, make_splits(index, "honest"), "honest").metrics
    assert m["fold3_test_accuracy"] == 0.0
    assert all(m[f"fold{k}_test_accuracy"] == 1.0 for k in (1, 2, 4, 5, 6))
    assert m["fold2_val_accuracy"] == 0.0  # fold 3 validates test fold 2
    assert m["test_accuracy"] == pytest.approx(5 / 6) and m["val_accuracy"] == pytest.approx(5 / 6)
    assert m["test_accuracy_std"] == pytest.approx(np.std([1, 1, 0, 1, 1, 1]))
    paper = evaluate(stump, X, labels, make_splits(index, "paper"), "paper").metrics
    assert paper["val_accuracy"] == paper["test_accuracy"]
    assert "fold1_val_accuracy" not in paper


def test_too_few_folds_for_the_honest_protocol_says_what_to_change():
    with pytest.raises(ValueError, match="protocol.mode=honest needs at least 3 .* raise dataset.n_folds"):
        make_splits(fold_index(n_folds=2), "honest")
    assert len(make_splits(fold_index(n_folds=2), "paper")) == 2


def test_size_weighted_fold_scores_are_the_accuracy_over_all_pooled_test_clips():
    """The original's SVM figure (GridSearchCV, iid=True): folds of unequal size weigh by size."""
    clips = [Clip(f"c{i}", "", "ab"[i % 2], fold=1 + (i >= 4) + (i >= 10)) for i in range(16)]  # folds of 4, 6, 6
    index = ClipIndex("toy", clips, "folds")
    labels = np.array([c.label for c in index.clips])
    fold = np.array([c.fold for c in index.clips])
    X = np.where(labels == "a", 0.0, 1.0)[:, None]
    X[fold == 1] = 1.0 - X[fold == 1]  # fold 1 (4 clips) is all wrong for a stump trained elsewhere
    stump = lambda: DecisionTreeClassifier(max_depth=1)  # noqa: E731
    splits = make_splits(index, "paper")
    equal = evaluate(stump, X, labels, splits, "paper", "equal").metrics
    size = evaluate(stump, X, labels, splits, "paper", "size").metrics
    assert equal["test_accuracy"] == pytest.approx((0 + 1 + 1) / 3)
    assert size["test_accuracy"] == pytest.approx(12 / 16) == size["val_accuracy"]  # 12 of 16 clips right


@pytest.mark.parametrize("override, message", [("probe.knn_k=0", "probe.knn_k=0 must be at least 1"),
                                               ("probe.proxy_batch=1", "probe.proxy_batch=1 must be at least 2")])
def test_probe_settings_are_checked_before_anything_runs(override, message):
    from elm_audio.config import ConfigError, compose
    from elm_audio.settings.validate import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose([override]))
