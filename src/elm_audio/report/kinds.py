"""The task kinds as the report sees them: each kind's primary metric (what chooses a run, what
the table, the figures and the tests compare), its secondary metric, their ranges, how they are
written, and chance.

A run tagged ``kind`` (multiclass, multilabel, regression) logs ``val_<p>``, ``test_<p>``,
``fold<k>_test_<p>`` and ``knn_<p>`` for its kind's primary metric ``p``; a run without the tag
is multiclass (logged before the kinds). Runs of different kinds are never compared: the report
writes one comparison per kind (build.build_all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..datasets.index import TASK_KINDS as KINDS
from ..evaluation import scoring

MULTICLASS, MULTILABEL, REGRESSION = KINDS


@dataclass(frozen=True)
class Metric:
    """A metric as the report writes it. ``scale`` turns a value into what is printed (100: a
    percentage, whose differences are points); ``low``/``high`` its range (None: unbounded)."""

    name: str  # as in the metric names runs log: val_<name>, test_<name>, ...
    label: str  # as the report's text names it
    what: str  # "an accuracy": what a value outside the range is not
    low: float | None
    high: float | None
    scale: float = 100.0
    digits: int = 1
    higher_is_better: bool = True

    @property
    def percent(self) -> bool:
        return self.scale == 100.0

    @property
    def unit(self) -> str:
        """After a column's or an axis's name: " (%)" for a percentage."""
        return " (%)" if self.percent else ""

    @property
    def points(self) -> str:
        """After a difference: " points" (of a percentage), nothing for a plain number."""
        return " points" if self.percent else ""

    def number(self, value: float) -> str:
        """A value as the table writes it: 62.0 (a percentage), 0.612 (R²)."""
        return f"{self.scale * value:.{self.digits}f}"

    def diff(self, value: float) -> str:
        """A difference, signed: +10.7 (points), +0.052."""
        return f"{self.scale * value:+.{self.digits}f}"

    def value(self, value: float) -> str:
        """A value in a sentence: 62.0% (accuracy), mAP 38.1%, R² 0.612."""
        text = f"{self.number(value)}{'%' if self.percent else ''}"
        return text if self.name == "accuracy" else f"{self.label} {text}"

    def axis(self, prefix: str = "test ") -> str:
        """An axis's label: "test accuracy (%)", "test R²"."""
        return f"{prefix}{self.label}{self.unit}"

    def range_text(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}]" if self.low is not None else f"({low}, {high}]"

    def problem(self, metric: str, value: float) -> str | None:
        """Why ``value`` cannot be this metric (None: it can); ``metric`` names it as logged."""
        if self.low is not None and self.high is not None and not self.low <= value <= self.high:
            return f"metric {metric} lies outside {self.range_text()}, the range of {self.what}"
        if not (math.isfinite(value) and abs(value) < 1.7976931348623157e308):  # SQL stores keep inf as the largest float
            return f"metric {metric} is not finite"
        if self.low is not None and value < self.low:
            return f"metric {metric} is below {self.low:g}, and {self.what} never is"
        if self.high is not None and value > self.high:
            return f"metric {metric} is above {self.high:g}, and {self.what} never is"
        return None

    def clip(self, values):
        """``values`` within the metric's range."""
        return np.clip(values, -np.inf if self.low is None else self.low, np.inf if self.high is None else self.high)


ACCURACY = Metric("accuracy", "accuracy", "an accuracy", 0.0, 1.0)
MAP = Metric("map", "mAP", "an average precision", 0.0, 1.0)
ROC_AUC = Metric("roc_auc", "ROC-AUC", "an area under a curve", 0.0, 1.0)
R2 = Metric("r2", "R²", "an R²", None, 1.0, scale=1.0, digits=3)
MAE = Metric("mae", "MAE", "a mean absolute error", 0.0, None, scale=1.0, digits=3, higher_is_better=False)
TAG_AP = Metric("tag_ap", "AP", "an average precision", 0.0, 1.0)

BY_NAME = {m.name: m for m in (ACCURACY, MAP, ROC_AUC, R2, MAE)}
PRIMARY = {kind: BY_NAME[name] for kind, name in scoring.PRIMARY.items()}  # what the runs log (scoring.py)
SECONDARY = {kind: BY_NAME[names[0]] for kind, names in scoring.SECONDARY.items() if names}


def kind_of(value: object) -> str | None:
    """A run's kind from its tag: multiclass where there is none (runs logged before the
    kinds); None for a tag that names no kind."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MULTICLASS
    return value if value in KINDS else None


def primary(kind: str) -> Metric:
    return PRIMARY.get(kind, ACCURACY)


def secondary(kind: str) -> Metric | None:
    return SECONDARY.get(kind)


@dataclass(frozen=True)
class Chance:
    """What a scorer without information scores on the primary metric: a line on its figures."""

    value: float  # in the metric's own units (0.1 for 10%)
    label: str  # the legend's


def chance(kind: str, n_classes: int | None = None, chance_map: float | None = None) -> Chance | None:
    """Multiclass: 1/classes (uniform guessing); multilabel: the mAP of a constant scorer, the
    mean tag prevalence (``chance_map``, the runs' ``test_chance_map``); regression: R² 0 (the
    targets' mean). None where it is not known."""
    if kind == MULTILABEL:
        if chance_map is None or not np.isfinite(chance_map):
            return None
        return Chance(float(chance_map), f"chance: constant scorer, mAP {100 * chance_map:.1f}%")
    if kind == REGRESSION:
        return Chance(0.0, "chance: R² 0 (predicting the mean)")
    return Chance(1 / n_classes, f"chance: 1/{n_classes} classes") if n_classes else None


def as_chance(value: Chance | int | None) -> Chance | None:
    """A figure's chance argument: a Chance, or (as before the kinds) a number of classes."""
    if value is None or isinstance(value, Chance):
        return value
    return chance(MULTICLASS, int(value))
