"""Evaluation protocols (docs/method.md, "Datasets and protocols").

Fixed partitions: fit on train, validate on validation, score on test.

Folds, ``honest`` (default): for test fold k the validation fold is the next one (k+1, the last
wrapping to the first) and the model is fitted on the remaining folds, so no test fold takes
part in any choice. ``paper``: the original code's cross-validation, fitting on all other folds
and scoring on fold k; the same scores choose the hyper-parameters and report the result
(``val_<metric>`` equals ``test_<metric>``), which flatters every figure a little.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..classifiers.kinds import fit_with_eval_set
from ..classifiers.knn import KNNProbeClassifier, KNNProbeRegressor, KNNProbeTagger
from ..config import ConfigError, shown
from ..datasets.index import ClipIndex
from .scoring import SECONDARY, Score, output, primary, score

Mode = Literal["honest", "paper"]
MODES = ("honest", "paper")
# How fold scores make a run's figure: their plain mean, or weighted by fold size (the
# original code's SVM figure, GridSearchCV's iid=True: the accuracy over all pooled clips).
FOLD_WEIGHTINGS = ("equal", "size")
KNN_PROBES = {"multiclass": KNNProbeClassifier, "multilabel": KNNProbeTagger, "regression": KNNProbeRegressor}


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
    """One split's scores on the kind's primary metric (``scoring.py``), and the test clips'
    outputs they were computed from."""

    name: str
    val_score: float
    test: Score
    test_rows: np.ndarray
    test_output: np.ndarray
    n_validation: int

    @property
    def test_score(self) -> float:
        return self.test.value


@dataclass
class Evaluation:
    splits: list[SplitResult]
    fit_seconds: float
    mode: str
    fold_weighting: str = "equal"
    # the protocol's splits where fewer were fitted (a pruned sweep trial); None: all were
    planned: int | None = None
    kind: str = "multiclass"
    metrics: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        """The run's figures over its splits (names: ``scoring.py``'s contract); a stopped
        evaluation has only its splits' own (no val_<metric> or test_<metric>: a mean over some
        folds is no result to compare)."""
        self.metrics = {"fit_seconds": self.fit_seconds}
        name = primary(self.kind)
        by_size = self.fold_weighting == "size"
        test_weights = [len(s.test_rows) for s in self.splits] if by_size else None
        if not self.stopped:
            test = np.array([s.test_score for s in self.splits])
            self.metrics.update({
                f"val_{name}": running_objective(self.splits, self.fold_weighting),
                f"test_{name}": float(np.average(test, weights=test_weights)),
                f"test_{name}_std": float(test.std()),
                "n_test_clips": float(sum(len(s.test_rows) for s in self.splits)),
            })  # fmt: skip
            for extra in SECONDARY[self.kind]:
                values = np.array([s.test.secondary[extra] for s in self.splits])
                self.metrics[f"test_{extra}"] = float(np.average(values, weights=test_weights))
            if self.kind == "multilabel":
                self.metrics["test_chance_map"] = float(np.average([s.test.chance for s in self.splits], weights=test_weights))
        if len(self.splits) > 1 or self.stopped:
            for s in self.splits:
                self.metrics[f"{s.name}_test_{name}"] = s.test_score
                if self.mode == "honest":
                    self.metrics[f"{s.name}_val_{name}"] = s.val_score
                for extra in SECONDARY[self.kind]:
                    self.metrics[f"{s.name}_test_{extra}"] = s.test.secondary[extra]
        if self.kind == "multilabel":
            for s in self.splits:
                self.metrics[f"{s.name}_tags_left_out"] = float(s.test.tags_left_out)

    @property
    def stopped(self) -> bool:
        """Whether fitting stopped before the protocol's last split (a pruned trial)."""
        return self.planned is not None

    def tag_ap(self) -> np.ndarray:
        """Each tag's average precision, the mean over the splits where it was scored (NaN: none)."""
        with np.errstate(all="ignore"):
            return np.nanmean(np.vstack([s.test.tag_ap for s in self.splits]), axis=0)


def running_objective(splits: list[SplitResult], fold_weighting: str = "equal") -> float:
    """The objective over the splits fitted so far, weighted as the run's own figure is: after
    the last split, the run's ``val_<metric>``."""
    weights = [s.n_validation for s in splits] if fold_weighting == "size" else None
    return float(np.average([s.val_score for s in splits], weights=weights))


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
    make_classifier: Callable[[], BaseEstimator],
    features: np.ndarray,
    labels: np.ndarray,
    splits: list[Split],
    mode: Mode = "honest",
    fold_weighting: str = "equal",
    report: Callable[[int, float, bool], bool] | None = None,
    kind: str = "multiclass",
) -> Evaluation:
    """Fit one model per split and score it on the ``kind``'s primary metric; validation and
    test use the same fit. ``labels``: the model's y (``ClipIndex.y()``).

    ``report`` (a sweep's pruning) is called after each split, in the protocol's order (fixed:
    make_splits follows the sorted fold numbers), with the split's index, the running objective
    (``running_objective``) and whether it was the last; where it returns True the remaining
    splits are not fitted and the evaluation is ``stopped``."""
    labels = np.asarray(labels)
    results = []
    start = time.perf_counter()
    for step, split in enumerate(splits):
        held_out = None if split.validation is None else (features[split.validation], labels[split.validation])
        model = fit_with_eval_set(make_classifier(), features[split.train], labels[split.train], held_out)
        out = output(kind, model, features[split.test])
        test = score(kind, labels[split.test], out, f"test split {split.name}")
        if split.validation is not None:
            val = score(kind, labels[split.validation], output(kind, model, features[split.validation]),
                        f"validation split of {split.name}").value  # fmt: skip
        else:
            val = test.value
        n_val = len(split.test) if split.validation is None else len(split.validation)
        results.append(SplitResult(split.name, val, test, split.test, out, n_val))
        last = step == len(splits) - 1
        if report is not None and report(step, running_objective(results, fold_weighting), last) and not last:
            return Evaluation(results, time.perf_counter() - start, mode, fold_weighting, planned=len(splits), kind=kind)
    return Evaluation(results, time.perf_counter() - start, mode, fold_weighting, kind=kind)


def knn_probe(
    features: np.ndarray, labels: np.ndarray, splits: list[Split], k: int, fold_weighting: str = "equal", kind: str = "multiclass"
) -> dict[str, float]:
    """The classifier-free probe: k nearest neighbours by cosine on the features standardized on
    each split's training clips (classifiers/knn.py), scored on its test clips on the kind's
    primary metric: ``knn_<metric>`` over the splits as ``test_<metric>`` is, and
    ``fold<k>_knn_<metric>``."""
    labels = np.asarray(labels)
    scores, sizes = {}, []
    for split in splits:
        model = make_pipeline(StandardScaler(), KNN_PROBES[kind](n_neighbors=k)).fit(features[split.train], labels[split.train])
        scores[split.name] = score(kind, labels[split.test], output(kind, model, features[split.test]), split.name).value
        sizes.append(len(split.test))
    weights = sizes if fold_weighting == "size" else None
    name = f"knn_{primary(kind)}"
    metrics = {name: float(np.average(list(scores.values()), weights=weights))}
    if len(splits) > 1:
        metrics.update({f"{split}_{name}": v for split, v in scores.items()})
    return metrics
