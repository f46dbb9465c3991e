"""Runs out of MLflow, one row each, with what the comparison needs."""

from __future__ import annotations

import importlib
import pkgutil
import re
import tempfile
from functools import cache

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from .. import frontends, tracking

from ..tracking import DEFAULT_EXPERIMENT, EXPERIMENT_PREFIX, dataset_of
from . import trust

FOLD_METRIC = re.compile(r"^metrics\.(fold\d+)_test_accuracy$")
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
}
KNN_FOLD_METRIC = re.compile(r"^metrics\.(fold\d+)_knn_accuracy$")
CLASS_METRIC = re.compile(r"^metrics\.class_accuracy/(.+)$")


def elm_experiments(client: MlflowClient) -> dict[str, str]:
    """dataset part of the name -> experiment id, for every experiment named as elm_audio's are."""
    return {
        dataset_of(e.name): e.experiment_id
        for e in client.search_experiments(max_results=1000)
        if dataset_of(e.name) is not None
    }


def experiments(client: MlflowClient, datasets: list[str] | None) -> dict[str, str]:
    """dataset name -> experiment id, for elm_audio's experiments whose dataset can name the
    report's folder (``refused_experiments`` names the others)."""
    found = {d: i for d, i in elm_experiments(client).items() if trust.dataset_problem(d) is None}
    return {d: i for d, i in found.items() if not datasets or d in datasets}


def refused_experiments(client: MlflowClient) -> list[str]:
    """A line for each experiment named as elm_audio's whose dataset cannot name a folder."""
    return [
        f"left out: experiment {trust.quoted(EXPERIMENT_PREFIX + d)} (id {i}): {problem}; rename the experiment in MLflow"
        for d, i in elm_experiments(client).items()
        if (problem := trust.dataset_problem(d))
    ]


def load_runs(uri: str, experiment_id: str) -> pd.DataFrame:
    """Every run and trial of an experiment (not sweep parents or reports), with its per-fold
    test accuracies in ``folds`` (a dict; one entry, ``test``, for fixed partitions).

    Sweep trials their pruner stopped (tag ``pruned``) are no result: they are not rows, and
    are counted apart in the frame's ``attrs["n_pruned"]``."""
    tracking.use(uri)
    raw = mlflow.search_runs([experiment_id], max_results=100_000, output_format="pandas")
    if raw.empty or "tags.elm_audio.role" not in raw:
        empty = pd.DataFrame(columns=[*COLUMNS.values(), "run_id", "status", "folds", "input", "distrusted", "features_refused"])
        empty.attrs["n_pruned"] = 0
        return empty
    raw = raw[raw["tags.elm_audio.role"].isin(["run", "trial"])]
    pruned = raw["tags.pruned"].eq("true") if "tags.pruned" in raw else pd.Series(False, index=raw.index)
    raw = raw[~pruned]
    out = pd.DataFrame({new: raw[old] if old in raw else None for old, new in COLUMNS.items()})
    out["run_id"] = raw["run_id"].values
    out["status"] = raw["status"].values
    out["start_time"] = raw["start_time"]  # aligned on the index, keeping the time zone
    fold_cols = [c for c in raw.columns if FOLD_METRIC.match(c)]
    out["folds"] = [
        {FOLD_METRIC.match(c)[1]: row[c] for c in fold_cols if pd.notna(row[c])} or {"test": row["metrics.test_accuracy"]}
        for _, row in raw.iterrows()
    ]
    knn_cols = [c for c in raw.columns if KNN_FOLD_METRIC.match(c)]
    out["knn_folds"] = [
        {KNN_FOLD_METRIC.match(c)[1]: row[c] for c in knn_cols if pd.notna(row[c])} or {"test": row.get("metrics.knn_accuracy")}
        for _, row in raw.iterrows()
    ]
    class_cols = [c for c in raw.columns if CLASS_METRIC.match(c)]
    out["class_accuracy"] = [{CLASS_METRIC.match(c)[1]: row[c] for c in class_cols if pd.notna(row[c])} for _, row in raw.iterrows()]
    out["experiment"] = out["experiment"].fillna(DEFAULT_EXPERIMENT)  # runs logged before the tag
    out["n_clips"] = pd.to_numeric(out["n_clips"], errors="coerce")
    out["n_params"] = pd.to_numeric(out["n_params"], errors="coerce")
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
    client = MlflowClient(uri)
    votes = []
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in runs["run_id"]:
            try:
                path = client.download_artifacts(run_id, "predictions.csv", tmp)
            except Exception:  # a run logged without predictions (interrupted, older)
                continue
            table = pd.read_csv(path)
            votes.append((table["label"].astype(str) == table["prediction"].astype(str)).set_axis(table["clip_id"]))
    if not votes:
        return pd.Series(dtype=bool)
    together = pd.concat(votes, axis=1).dropna()
    return together.mean(axis=1) > 0.5
