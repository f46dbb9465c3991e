"""What a model's output on some clips scores, for each task kind (the metric contract).

Each kind has a primary metric, the one runs are compared and sweeps are steered by
(``val_<primary>``): multiclass ``accuracy``; multilabel ``map``, the macro average precision
over tags (PR-AUC); regression ``r2``. Secondary: multilabel ``roc_auc`` (macro), regression
``mae``. A tag with no positive clip among the scored clips has no average precision: it is left
out of that split's macro averages and counted (``tags_left_out``); ROC-AUC also leaves out a
tag with no negative clip. Every figure is recomputable from ``predictions.csv`` with
scikit-learn's functions of the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import (
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from ..classifiers.kinds import tag_average_precision
from ..datasets.index import DatasetError

PRIMARY = {"multiclass": "accuracy", "multilabel": "map", "regression": "r2"}
SECONDARY = {"multiclass": (), "multilabel": ("roc_auc",), "regression": ("mae",)}


def primary(kind: str) -> str:
    return PRIMARY[kind]


def objective(kind: str) -> str:
    """The metric a sweep maximizes."""
    return f"val_{PRIMARY[kind]}"


def output(kind: str, model, features: np.ndarray) -> np.ndarray:
    """What the metrics are computed from: predicted labels (multiclass), one real-valued score
    per tag (multilabel: ``decision_function``), predicted values (regression)."""
    if kind == "multilabel":
        return np.asarray(model.decision_function(features), dtype=np.float64)
    if kind == "regression":
        return np.asarray(model.predict(features), dtype=np.float64)
    return model.predict(features)


@dataclass
class Score:
    """One split's figures: the primary metric, the secondary ones, and (multilabel) each tag's
    average precision (NaN where the tag was left out) and the mAP of a constant scorer."""

    value: float
    secondary: dict[str, float] = field(default_factory=dict)
    tags_left_out: int = 0
    tag_ap: np.ndarray | None = None
    chance: float | None = None


def score(kind: str, truth: np.ndarray, out: np.ndarray, where: str = "") -> Score:
    """``truth`` as ``ClipIndex.y()`` gives it for these clips, ``out`` as ``output`` returns.
    ``where`` names the split in the error raised when every tag is left out."""
    if kind == "multiclass":
        return Score(float(np.mean(out == truth)))
    if kind == "regression":
        return Score(float(r2_score(truth, out)), {"mae": float(mean_absolute_error(truth, out))})
    positives = truth.sum(axis=0)
    kept = positives > 0
    if not kept.any():
        raise DatasetError(
            f"no tag has a positive clip in {where or 'the scored clips'}: mAP is undefined; "
            "check the dataset's tags or use fewer folds"
        )
    ap = tag_average_precision(truth, out)
    both = kept & (positives < len(truth))
    roc = float(roc_auc_score(truth[:, both], out[:, both], average="macro")) if both.any() else float("nan")
    prevalence = positives[kept] / len(truth)
    return Score(float(np.nanmean(ap)), {"roc_auc": roc}, int((~kept).sum()), ap, float(prevalence.mean()))
