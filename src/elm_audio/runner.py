"""One run: (dataset, front-end, feature size, seed, classifier) -> metrics in MLflow.

Returns ``val_accuracy`` so that a sweeper can maximize it.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import ConfusionMatrixDisplay

from . import tracking
from .cache import FeatureCache, Features, cache_key
from .classifiers import build_classifier
from .config import build
from .datasets import ClipIndex, Dataset, DatasetError
from .datasets.base import Survey
from .datasets.check import CheckReport
from .describe import profile
from .devices import resolve_device
from .audio import check_fit
from .extract import ExtractSettings, autocast, extract
from .frontends import FrontEnd
from .protocols import Evaluation, evaluate, make_splits

# Config nodes that describe a search rather than this run: kept out of the params.
NOT_PARAMS = ("classifier.search_space", "classifier.paper_grid", "sweep.")


def build_frontend(cfg: DictConfig) -> FrontEnd:
    return build(cfg.frontend.net).init_weights(cfg.seed)


def build_dataset(cfg: DictConfig) -> Dataset:
    return build(cfg.dataset)


@dataclass
class Prepared:
    """Everything a run needs before it starts logging: checked inputs and the cache key."""

    dataset: Dataset
    survey: Survey
    index: ClipIndex
    frontend: FrontEnd
    profile: dict
    key: str


def prepare(cfg: DictConfig) -> Prepared:
    # config mistakes stop here, before anything is read or logged
    autocast(resolve_device(cfg.device), cfg.precision)
    check_fit(cfg.audio.fit)
    dataset = build_dataset(cfg)
    survey = dataset.survey(cfg.protocol.mode)
    index = dataset.to_index(survey)  # a copy missing files the protocol needs stops here, with the report
    make_splits(index, cfg.protocol.mode)  # an unknown protocol.mode too
    frontend = build_frontend(cfg)
    spec = {
        "clips": [(c.clip_id, c.path, _size(c.path)) for c in index.clips],
        "audio": OmegaConf.to_container(cfg.audio, resolve=True),
        "frontend": OmegaConf.to_container(cfg.frontend.net, resolve=True),
        "seed": int(cfg.seed),
        "precision": str(cfg.precision),
    }
    return Prepared(dataset, survey, index, frontend, profile(frontend), cache_key(spec))


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def features_for(cfg: DictConfig, prepared: Prepared, cache: FeatureCache) -> tuple[Features, bool]:
    """Load the features from the cache, or extract and store them (callers hold the lock).
    The flag says whether they were computed now."""
    found = cache.load(prepared.key)
    if found is not None:
        return found, False
    index, frontend = prepared.index, prepared.frontend
    # Before extracting, read every header: an unreadable clip stops the run now, not hours in.
    report = CheckReport.from_survey(prepared.dataset, prepared.survey, read_headers=True, progress=cfg.extract.progress)
    text = report.render()
    if report.bad_clips and prepared.dataset.on_bad_clip == "error":
        raise DatasetError(text)
    mlflow.log_text(text, "data_check.txt")
    settings = ExtractSettings(
        batch_size=cfg.extract.batch_size,
        num_workers=cfg.extract.num_workers,
        on_bad_clip=prepared.dataset.on_bad_clip,
        progress=cfg.extract.progress,
        precision=cfg.precision,
    )

    def fill(rows: np.ndarray) -> dict:
        start = time.perf_counter()
        bad = extract(frontend, index.clips, rows, resolve_device(cfg.device), cfg.audio.fit, settings)
        return {
            "clip_ids": [c.clip_id for c in index.clips],
            "labels": [c.label for c in index.clips],
            "bad_clips": bad,
            "extract_seconds": time.perf_counter() - start,
        }

    return cache.store(prepared.key, len(index.clips), prepared.profile["feature_dim"], fill), True


def run(cfg: DictConfig) -> float:
    prepared = prepare(cfg)  # bad config or data stops here, before anything is logged
    uri = tracking.connect(cfg.tracking.uri)
    experiment = tracking.experiment_id(f"elm_audio/{cfg.dataset.name}", uri)
    cache = FeatureCache(cfg.cache.dir)
    with mlflow.start_run(experiment_id=experiment, parent_run_id=cfg.sweep.parent_run_id) as active:
        run_id = active.info.run_id
        _log_config(cfg, prepared)
        with cache.lock(prepared.key):
            features, computed = features_for(cfg, prepared, cache)
            _log_features(features, uri, experiment, computed_here=computed)
        mlflow.log_metric("extract_seconds", features.extract_seconds)
        evaluation, rows = _evaluate(cfg, prepared, features)
        mlflow.log_metrics(evaluation.metrics)
        _log_outcome(evaluation, prepared.index, rows)
    _print_summary(cfg, prepared, features, evaluation, uri, experiment, run_id)
    return evaluation.metrics["val_accuracy"]


def _evaluate(cfg: DictConfig, prepared: Prepared, features: Features) -> tuple[Evaluation, np.ndarray]:
    usable = features.usable()
    if features.bad_clips:
        mlflow.set_tag("bad_clips", str(len(features.bad_clips)))
        mlflow.log_text(
            "\n".join(f"{cid}\t{why}" for cid, why in sorted(features.bad_clips.items())), "bad_clips.tsv"
        )
    index = prepared.index.without(set(features.bad_clips))
    rows = np.flatnonzero(usable)
    X = features.matrix[rows]
    y = np.array([c.label for c in index.clips])
    splits = make_splits(index, cfg.protocol.mode)
    evaluation = evaluate(lambda: build_classifier(cfg.classifier, cfg.seed), X, y, splits, cfg.protocol.mode)
    return evaluation, rows


def _log_config(cfg: DictConfig, prepared: Prepared) -> None:
    container = OmegaConf.to_container(cfg, resolve=True)
    params = {k: v for k, v in tracking.flatten(container).items() if not k.startswith(NOT_PARAMS)}
    params.update(
        feature_size=cfg.feature_size.name,
        feature_dim=prepared.profile["feature_dim"],
        n_params=prepared.profile["n_params"],
        n_clips=len(prepared.index.clips),
        cache_key=prepared.key,
    )
    mlflow.log_params(params)
    mlflow.log_metric("gflops_per_clip", prepared.profile["gflops_per_clip"])
    mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    tags = tracking.config_tags(cfg)
    if cfg.sweep.study is not None:  # a trial of an Optuna sweep (set by the sweeper)
        tags.update({"elm_audio.role": "trial", "sweep_id": cfg.sweep.study, "trial": str(cfg.sweep.trial)})
    else:
        tags["elm_audio.role"] = "run"
    mlflow.set_tags(tags)


def _log_features(features: Features, uri: str, experiment: str, computed_here: bool) -> None:
    """Store the matrix once per cache key, in the run that computed it (or, for features
    cached before this store knew them, in the first run that uses them); point the others
    at that run with the ``features_run_id`` tag."""
    mlflow.set_tag("features_key", features.key)
    owner = None
    if not computed_here:
        found = MlflowClient(uri).search_runs(
            [experiment],
            filter_string=f"tags.features_key = '{features.key}' and tags.features_logged = 'true'",
            max_results=1,
        )
        owner = found[0].info.run_id if found else None
    if owner is not None:
        mlflow.set_tag("features_run_id", owner)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.npz"
        np.savez(
            path,
            features=features.matrix,
            labels=np.array(features.labels),
            clip_ids=np.array(features.clip_ids),
            usable=features.usable(),
        )
        mlflow.log_artifact(str(path), "features")
    mlflow.set_tags({"features_logged": "true", "features_run_id": mlflow.active_run().info.run_id})


def _log_outcome(evaluation: Evaluation, index: ClipIndex, rows: np.ndarray) -> None:
    clips = index.clips
    records = [
        {"clip_id": clips[i].clip_id, "label": clips[i].label, "prediction": p, "split": s.name}
        for s in evaluation.splits
        for i, p in zip(s.test_rows, s.test_predictions)
    ]
    predictions = pd.DataFrame.from_records(records)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "predictions.csv"
        predictions.to_csv(csv, index=False)
        mlflow.log_artifact(str(csv))
    fig = Figure(figsize=(2.0 + 0.6 * len(index.labels),) * 2)
    ax = fig.subplots()
    ConfusionMatrixDisplay.from_predictions(
        predictions["label"], predictions["prediction"], labels=index.labels, ax=ax, xticks_rotation="vertical", colorbar=False
    )
    ax.set_title(f"test predictions ({len(predictions)} clips)")
    fig.tight_layout()
    mlflow.log_figure(fig, "confusion_matrix.png")


def _print_summary(cfg, prepared, features, evaluation, uri, experiment, run_id) -> None:
    m = evaluation.metrics
    index = prepared.index
    unit = f"{len(index.folds)} folds" if index.protocol == "folds" else "train/validation/test"
    hyper = {k: cfg.classifier[k] for k in ("kernel", "C", "gamma", "hidden_units", "alpha") if k in cfg.classifier}
    skipped = f", {len(features.bad_clips)} skipped" if features.bad_clips else ""
    lines = [
        "",
        "elm_audio run finished",
        f"  dataset      {cfg.dataset.name}: {len(index.clips)} clips{skipped}, {len(index.labels)} classes, "
        f"{unit}, {cfg.protocol.mode} protocol",
        f"  front-end    {cfg.frontend.name}, feature size {cfg.feature_size.name} "
        f"({prepared.profile['feature_dim']} values, seed {cfg.seed})",
        f"  classifier   {cfg.classifier.name} " + ", ".join(f"{k}={v}" for k, v in hyper.items()),
        f"  validation   {m['val_accuracy']:.4f}",
        f"  test         {m['test_accuracy']:.4f} +/- {m['test_accuracy_std']:.4f}",
        f"  logged       run {run_id} in experiment elm_audio/{cfg.dataset.name} ({uri})",
        f"  browse       {tracking.ui_hint(uri, experiment, run_id)}",
    ]
    print("\n".join(lines), flush=True)
