"""Runs out of MLflow, one row each, with what the comparison needs."""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
import tempfile
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from .. import frontends
from ..stores import tracking
from ..stores.tracking import DEFAULT_EXPERIMENT, EXPERIMENT_PREFIX, dataset_of
from . import kinds, trust

FOLD_METRIC = re.compile(r"^metrics\.(fold\d+)_test_accuracy$")  # a multiclass run's (kinds: FOLD_SCORE)
FOLD_SCORE = re.compile(r"^metrics\.(fold\d+)_test_([a-z0-9_]+)$")
KNN_FOLD_SCORE = re.compile(r"^metrics\.(fold\d+)_knn_([a-z0-9_]+)$")
TAGS_LEFT_OUT = re.compile(r"^metrics\.fold\d+_tags_left_out$")
COLUMNS = {
    "tags.dataset": "dataset",
    "tags.frontend": "frontend",
    "tags.feature_size": "feature_size",
    "tags.classifier": "classifier",
    "tags.protocol.mode": "protocol",
    "tags.experiment": "experiment",
    "tags.sweep_id": "sweep_id",
    "params.seed": "seed",
    "params.frontend.net._target_": "target",
    "params.n_clips": "n_clips",
    "metrics.val_accuracy": "val_accuracy",
    "metrics.test_accuracy": "test_accuracy",
    "metrics.gflops_per_clip": "gflops_per_clip",
    "metrics.extract_seconds": "extract_seconds",
    "metrics.n_test_clips": "n_test_clips",
    "tags.features_logged": "features_logged",
    "tags.features_key": "features_key",
    "tags.features_run_id": "features_run_id",
    "params.n_params": "n_params",
    "metrics.knn_accuracy": "knn_accuracy",
    "metrics.naswot": "naswot",
    "metrics.synflow": "synflow",
    "tags.kind": "kind",
    "metrics.test_chance_map": "chance_score",
}
# what the rest of the report compares, whatever the kind (kinds.py): each run's primary metric
GENERIC = ["metric", "val_score", "test_score", "knn_score", "secondary", "secondary_score", "tags_left_out"]
KNN_FOLD_METRIC = re.compile(r"^metrics\.(fold\d+)_knn_accuracy$")
CLASS_METRIC = re.compile(r"^metrics\.class_accuracy/(.+)$")
TAG_METRIC = re.compile(r"^metrics\.tag_ap/(.+)$")


def elm_experiments(uri: str) -> dict[str, str]:
    """dataset part of the name -> experiment id, for every experiment named as elm_audio's are."""
    return {dataset_of(name): i for name, i in tracking.experiment_ids(uri).items() if dataset_of(name) is not None}


def experiments(uri: str, datasets: list[str] | None) -> dict[str, str]:
    """dataset name -> experiment id, for elm_audio's experiments whose dataset can name the
    report's folder (``refused_experiments`` names the others)."""
    found = {d: i for d, i in elm_experiments(uri).items() if trust.dataset_problem(d) is None}
    return {d: i for d, i in found.items() if not datasets or d in datasets}


def refused_experiments(uri: str) -> list[str]:
    """A line for each experiment named as elm_audio's whose dataset cannot name a folder."""
    return [
        f"left out: experiment {trust.quoted(EXPERIMENT_PREFIX + d)} (id {i}): {problem}; rename the experiment in MLflow"
        for d, i in elm_experiments(uri).items()
        if (problem := trust.dataset_problem(d))
    ]


def load_runs(uri: str, experiment_id: str) -> pd.DataFrame:
    """Every run and trial of an experiment (not sweep parents or reports), with its per-fold
    test scores on its kind's primary metric in ``folds`` (a dict; one entry, ``test``, for
    fixed partitions).

    Each run's ``kind`` (tag ``kind``; multiclass without it) names its primary metric
    (``metric``: accuracy, map, r2); ``val_score``, ``test_score``, ``knn_score`` and the
    dicts ``folds`` and ``knn_folds`` hold that metric whatever the kind, which is what the rest
    of the report compares. ``secondary`` names the kind's secondary metric (roc_auc, mae; None
    for multiclass), with ``secondary_score`` and ``secondary_folds``; ``chance_score`` is a
    multilabel run's ``test_chance_map``, ``tag_ap`` its per-tag average precision and
    ``tags_left_out`` the tags its folds left out of their macro averages.

    Sweep trials their pruner stopped (tag ``pruned``) are no result: they are not rows, and
    are counted apart in the frame's ``attrs["n_pruned"]``."""
    raw = tracking.runs_table(uri, experiment_id, max_results=100_000)
    if raw.empty or "tags.elm_audio.role" not in raw:
        empty = pd.DataFrame(columns=[*COLUMNS.values(), *GENERIC, "run_id", "status", "folds", "input", "distrusted", "features_refused"])
        empty.attrs["n_pruned"] = 0
        return empty
    raw = raw[raw["tags.elm_audio.role"].isin(["run", "trial"])]
    pruned = raw["tags.pruned"].eq("true") if "tags.pruned" in raw else pd.Series(False, index=raw.index)
    raw = raw[~pruned]
    out = pd.DataFrame({new: raw[old] if old in raw else None for old, new in COLUMNS.items()})
    out["run_id"] = raw["run_id"].values
    out["status"] = raw["status"].values
    out["start_time"] = raw["start_time"]  # aligned on the index, keeping the time zone
    out["kind"] = [kinds.MULTICLASS if trust.absent(k) else k for k in out["kind"]]  # runs logged before the kinds
    out["metric"] = [kinds.primary(k).name for k in out["kind"]]
    out["secondary"] = [m.name if (m := kinds.secondary(k)) else None for k in out["kind"]]

    def metric(row: pd.Series, name: str | None) -> float:
        value = row.get(f"metrics.{name}") if name else None
        return float(value) if value is not None and pd.notna(value) else np.nan

    def per_split(row: pd.Series, pattern: re.Pattern, name: str | None) -> dict[str, float]:
        found = {}
        for c in raw.columns:
            m = pattern.match(c)
            if m and m[2] == name and pd.notna(row[c]):
                found[m[1]] = row[c]
        return dict(sorted(found.items(), key=lambda kv: int(kv[0].removeprefix("fold"))))  # MLflow's column order varies

    generic: dict[str, list] = {k: [] for k in ("val_score", "test_score", "knn_score", "secondary_score", "folds",
                                                "knn_folds", "secondary_folds", "tags_left_out")}  # fmt: skip
    left_out_cols = [c for c in raw.columns if TAGS_LEFT_OUT.match(c)]
    for (_, row), p, second in zip(raw.iterrows(), out["metric"], out["secondary"]):
        test, knn, other = metric(row, f"test_{p}"), metric(row, f"knn_{p}"), metric(row, f"test_{second}" if second else None)
        generic["val_score"].append(metric(row, f"val_{p}"))
        generic["test_score"].append(test)
        generic["knn_score"].append(knn)
        generic["secondary_score"].append(other)
        generic["folds"].append(per_split(row, FOLD_SCORE, p) or {"test": test})
        generic["knn_folds"].append(per_split(row, KNN_FOLD_SCORE, p) or {"test": knn})
        generic["secondary_folds"].append(per_split(row, FOLD_SCORE, second) or ({"test": other} if pd.notna(other) else {}))
        left = [row[c] for c in left_out_cols if pd.notna(row[c])]
        generic["tags_left_out"].append(float(np.sum(left)) if left else np.nan)
    for column, values in generic.items():
        out[column] = values
    class_cols = [c for c in raw.columns if CLASS_METRIC.match(c)]
    out["class_accuracy"] = [{CLASS_METRIC.match(c)[1]: row[c] for c in class_cols if pd.notna(row[c])} for _, row in raw.iterrows()]
    tag_cols = [c for c in raw.columns if TAG_METRIC.match(c)]
    out["tag_ap"] = [{TAG_METRIC.match(c)[1]: row[c] for c in tag_cols if pd.notna(row[c])} for _, row in raw.iterrows()]
    out["experiment"] = out["experiment"].fillna(DEFAULT_EXPERIMENT)  # runs logged before the tag
    out["n_clips"] = pd.to_numeric(out["n_clips"], errors="coerce")
    out["n_params"] = pd.to_numeric(out["n_params"], errors="coerce")
    out["chance_score"] = pd.to_numeric(out["chance_score"], errors="coerce")
    out = vetted(out.reset_index(drop=True))
    out["input"] = [input_kind(t) for t in out["target"]]
    out.attrs["n_pruned"] = int(pruned.sum())
    return out


def vetted(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with what ``trust`` finds in them: ``distrusted``, why a run cannot enter the
    report at all (``stats.why_left_out`` leaves it out), and ``features_refused``, why its
    features key and features run are not followed (both are then blanked, so that nothing
    downstream takes them for a path); seeds as numbers."""
    runs["distrusted"] = [trust.why_distrusted(r) for _, r in runs.iterrows()]
    runs["features_refused"] = [trust.features_problem(r) for _, r in runs.iterrows()]
    runs.loc[runs["features_refused"].notna(), ["features_key", "features_run_id"]] = None
    runs["seed"] = pd.array([trust.seed_of(s) for s in runs["seed"]], dtype="Int64")
    return runs


@cache
def frontend_classes() -> dict[str, type]:
    """elm_audio's own front-end classes, by the ``_target_`` a config names them with: the
    only names the report looks up (whoever can write the MLflow store chooses the params, so
    a module a run names is never imported)."""
    for module in pkgutil.iter_modules(frontends.__path__):
        importlib.import_module(f"{frontends.__name__}.{module.name}")
    found, todo = {}, [frontends.FrontEnd]
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return found


def input_kind(target: str | None) -> str:
    """waveform or spectrogram, from the front-end class a run names (mfcc: baseline; a HEAR
    module or vectors computed elsewhere: imported); unknown for a name that is not one of
    elm_audio's front-ends."""
    cls = frontend_classes().get(target) if isinstance(target, str) else None
    if cls is None:
        return "unknown"
    if cls.__name__ == "MFCC":
        return "baseline"
    if getattr(cls, "fits_input", True) is False:
        return "imported"
    return getattr(cls, "input_kind", "unknown")


def clip_correctness(uri: str, runs: pd.DataFrame) -> pd.Series:
    """Per test clip, whether most of ``runs`` (one per seed) predicted it right, from their
    predictions.csv artifacts; ties count as wrong."""
    votes = []
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in runs["run_id"]:
            try:
                path = tracking.download_artifact(uri, run_id, "predictions.csv", tmp)
            except Exception:  # a run logged without predictions (interrupted, older)
                continue
            table = pd.read_csv(path)
            votes.append((table["label"].astype(str) == table["prediction"].astype(str)).set_axis(table["clip_id"]))
    if not votes:
        return pd.Series(dtype=bool)
    together = pd.concat(votes, axis=1).dropna()
    return together.mean(axis=1) > 0.5


@dataclass
class ClipScores:
    """One run's test clips as its predictions.csv gives them, in the form its kind's metric is
    computed from: multilabel ``truth`` (clips x tags, 0/1) and ``scores`` (clips x tags);
    regression ``truth`` (targets) and ``scores`` (predictions)."""

    run_id: str
    clips: pd.Index
    truth: np.ndarray
    scores: np.ndarray
    tags: list[str] = field(default_factory=list)

    def take(self, clips: pd.Index) -> ClipScores:
        rows = self.clips.get_indexer(clips)
        return ClipScores(self.run_id, clips, self.truth[rows], self.scores[rows], self.tags)


def clip_scores(table: pd.DataFrame, kind: str, run_id: str = "") -> ClipScores | None:
    """A predictions table (predictions.csv) as ``ClipScores``; None where it lacks the columns
    of its kind, or has no clip left once rows with a missing value are dropped."""
    if "clip_id" not in table:
        return None
    table = table.drop_duplicates("clip_id")
    table.index = pd.Index(table["clip_id"].astype(str), name="clip_id")
    if kind == kinds.MULTILABEL:
        tags = [c.removeprefix("true:") for c in table.columns if c.startswith("true:") and f"score:{c[5:]}" in table]
        if not tags:
            return None
        truth = table[[f"true:{t}" for t in tags]].apply(pd.to_numeric, errors="coerce")
        scores = table[[f"score:{t}" for t in tags]].apply(pd.to_numeric, errors="coerce")
        ok = truth.notna().all(axis=1) & scores.notna().all(axis=1) & truth.isin([0, 1]).all(axis=1)
        truth, scores = truth[ok].to_numpy(dtype=np.float64), scores[ok].to_numpy(dtype=np.float64)
        tags_kept = tags
    elif kind == kinds.REGRESSION:
        if not {"target", "prediction"} <= set(table.columns):
            return None
        truth = pd.to_numeric(table["target"], errors="coerce")
        scores = pd.to_numeric(table["prediction"], errors="coerce")
        ok = np.isfinite(truth) & np.isfinite(scores)
        truth, scores, tags_kept = truth[ok].to_numpy(dtype=np.float64), scores[ok].to_numpy(dtype=np.float64), []
    else:
        return None
    if not ok.any():
        return None
    return ClipScores(run_id, pd.Index(table.index[ok.to_numpy()]), truth, scores, tags_kept)


def run_clip_scores(uri: str, runs: pd.DataFrame, kind: str) -> list[ClipScores]:
    """``clip_scores`` of each of ``runs`` (one per seed) that logged a predictions.csv of its kind."""
    found = (_run_clip_scores(uri, run_id, kind) for run_id in runs["run_id"])
    return [scores for scores in found if scores is not None]


@functools.lru_cache(maxsize=64)  # a report reads a run's predictions for its pairs, its interval and its figure
def _run_clip_scores(uri: str, run_id: str, kind: str) -> ClipScores | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracking.download_artifact(uri, run_id, "predictions.csv", tmp)
        except Exception:  # a run logged without predictions (interrupted, older)
            return None
        return clip_scores(pd.read_csv(path), kind, run_id)
