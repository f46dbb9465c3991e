"""Evaluation protocols (spec/method.md, "Datasets and protocols").

Fixed partitions: fit on train, validate on validation, score on test.

Folds, ``honest`` (default): for test fold k the validation fold is the next one (k+1, the last
wrapping to the first) and the model is fitted on the remaining folds, so no test fold takes
part in any choice. ``paper``: the original code's cross-validation, fitting on all other folds
and scoring on fold k; the same scores choose the hyper-parameters and report the result
(``val_accuracy`` equals ``test_accuracy``), which flatters every figure a little.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .config import ConfigError, shown
from .datasets.index import ClipIndex

Mode = Literal["honest", "paper"]
MODES = ("honest", "paper")
# How fold scores make a run's figure: their plain mean, or weighted by fold size (the
# original code's SVM figure, GridSearchCV's iid=True: the accuracy over all pooled clips).
FOLD_WEIGHTINGS = ("equal", "size")


@dataclass(frozen=True)
class Split:
    """One fit: which rows train, validate (None under the paper's protocol) and test."""

    name: str
    train: np.ndarray
    validation: np.ndarray | None
    test: np.ndarray

    def keep(self, usable: np.ndarray) -> "Split":
        """The same split without the rows ``usable`` marks False (clips that did not decode)."""
        only = lambda rows: rows[usable[rows]]  # noqa: E731
        validation = None if self.validation is None else only(self.validation)
        return Split(self.name, only(self.train), validation, only(self.test))


@dataclass
class SplitResult:
    name: str
    val_accuracy: float
    test_accuracy: float
    test_rows: np.ndarray
    test_predictions: np.ndarray
    n_validation: int


@dataclass
class Evaluation:
    splits: list[SplitResult]
    fit_seconds: float
    mode: str
    fold_weighting: str = "equal"
    # the protocol's splits where fewer were fitted (a pruned sweep trial); None: all were
    planned: int | None = None
    metrics: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        """The run's figures over its splits; a stopped evaluation has only its splits' own
        (no val_accuracy or test_accuracy: a mean over some folds is no result to compare)."""
        self.metrics = {"fit_seconds": self.fit_seconds}
        if not self.stopped:
            test = np.array([s.test_accuracy for s in self.splits])
            by_size = self.fold_weighting == "size"
            test_weights = [len(s.test_rows) for s in self.splits] if by_size else None
            self.metrics.update(
                val_accuracy=running_val_accuracy(self.splits, self.fold_weighting),
                test_accuracy=float(np.average(test, weights=test_weights)),
                test_accuracy_std=float(test.std()),
                n_test_clips=float(sum(len(s.test_rows) for s in self.splits)),
            )
        if len(self.splits) > 1 or self.stopped:
            for s in self.splits:
                self.metrics[f"{s.name}_test_accuracy"] = s.test_accuracy
                if self.mode == "honest":
                    self.metrics[f"{s.name}_val_accuracy"] = s.val_accuracy

    @property
    def stopped(self) -> bool:
        """Whether fitting stopped before the protocol's last split (a pruned trial)."""
        return self.planned is not None


def running_val_accuracy(splits: list[SplitResult], fold_weighting: str = "equal") -> float:
    """The objective over the splits fitted so far, weighted as the run's own figure is: after
    the last split, the run's ``val_accuracy``."""
    weights = [s.n_validation for s in splits] if fold_weighting == "size" else None
    return float(np.average([s.val_accuracy for s in splits], weights=weights))


def make_splits(index: ClipIndex, mode: Mode = "honest") -> list[Split]:
    if mode not in MODES:
        raise ConfigError(f"protocol.mode={shown(mode)} is not one of {', '.join(MODES)}")
    if index.protocol == "partitions":
        part = np.array([c.partition for c in index.clips])
        rows = {p: np.flatnonzero(part == p) for p in ("train", "validation", "test")}
        return [Split("partition", rows["train"], rows["validation"], rows["test"])]
    fold = np.array([c.fold for c in index.clips])
    folds = index.folds
    if len(folds) < (3 if mode == "honest" else 2):
        raise ConfigError(
            f"dataset {index.dataset} has {len(folds)} fold(s); protocol.mode={mode} needs at least "
            f"{3 if mode == 'honest' else 2} (a test fold, a validation fold and one to train on): "
            "raise dataset.n_folds"
        )
    splits = []
    for i, k in enumerate(folds):
        test = np.flatnonzero(fold == k)
        if mode == "honest":
            v = folds[(i + 1) % len(folds)]
            validation = np.flatnonzero(fold == v)
            train = np.flatnonzero((fold != k) & (fold != v))
        else:
            validation = None
            train = np.flatnonzero(fold != k)
        splits.append(Split(f"fold{k}", train, validation, test))
    return splits


def evaluate(
    make_classifier: Callable[[], ClassifierMixin],
    features: np.ndarray,
    labels: np.ndarray,
    splits: list[Split],
    mode: Mode = "honest",
    fold_weighting: str = "equal",
    report: Callable[[int, float, bool], bool] | None = None,
) -> Evaluation:
    """Fit one classifier per split and score it; validation and test use the same fit.

    ``report`` (a sweep's pruning) is called after each split, in the protocol's order (fixed:
    make_splits follows the sorted fold numbers), with the split's index, the running objective
    (``running_val_accuracy``) and whether it was the last; where it returns True the remaining
    splits are not fitted and the evaluation is ``stopped``."""
    labels = np.asarray(labels)
    results = []
    start = time.perf_counter()
    for step, split in enumerate(splits):
        model = make_classifier().fit(features[split.train], labels[split.train])
        predictions = model.predict(features[split.test])
        test_acc = float(np.mean(predictions == labels[split.test]))
        if split.validation is not None:
            val_acc = float(np.mean(model.predict(features[split.validation]) == labels[split.validation]))
        else:
            val_acc = test_acc
        n_val = len(split.test) if split.validation is None else len(split.validation)
        results.append(SplitResult(split.name, val_acc, test_acc, split.test, predictions, n_val))
        last = step == len(splits) - 1
        if report is not None and report(step, running_val_accuracy(results, fold_weighting), last) and not last:
            return Evaluation(results, time.perf_counter() - start, mode, fold_weighting, planned=len(splits))
    return Evaluation(results, time.perf_counter() - start, mode, fold_weighting)


def knn_probe(features: np.ndarray, labels: np.ndarray, splits: list[Split], k: int, fold_weighting: str = "equal") -> dict[str, float]:
    """The classifier-free probe: k nearest neighbours by cosine on the features standardized on
    each split's training clips, scored on its test clips (k, or the training clips where fewer).
    ``knn_accuracy`` over the splits as ``test_accuracy`` is, and ``fold<k>_knn_accuracy``."""
    labels = np.asarray(labels)
    scores, sizes = {}, []
    for split in splits:
        knn = KNeighborsClassifier(n_neighbors=min(k, len(split.train)), metric="cosine", algorithm="brute")
        model = make_pipeline(StandardScaler(), knn).fit(features[split.train], labels[split.train])
        scores[split.name] = float(np.mean(model.predict(features[split.test]) == labels[split.test]))
        sizes.append(len(split.test))
    weights = sizes if fold_weighting == "size" else None
    metrics = {"knn_accuracy": float(np.average(list(scores.values()), weights=weights))}
    if len(splits) > 1:
        metrics.update({f"{name}_knn_accuracy": v for name, v in scores.items()})
    return metrics
