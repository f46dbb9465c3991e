"""One run: (dataset, front-end, feature size, seed, classifier) -> metrics in MLflow.

The sequence only; each step lives in the module named for it. Returns ``val_accuracy`` so
that a sweeper can maximize it.
"""

from __future__ import annotations

import mlflow
from omegaconf import DictConfig

from . import record, tracking
from .cache import FeatureCache
from .components import build_classifier
from .features import load_or_extract
from .plan import make_plan
from .protocols import evaluate
from .summary import summary_lines


def run(cfg: DictConfig) -> float:
    plan = make_plan(cfg)  # bad config or data stops here, before anything is read or logged
    uri = tracking.connect(cfg.tracking.uri)
    experiment = tracking.experiment_id(tracking.experiment_name(cfg.dataset.name), uri)
    cache = FeatureCache(cfg.cache.dir)
    with mlflow.start_run(experiment_id=experiment, parent_run_id=cfg.sweep.parent_run_id) as active:
        record.log_config(cfg, plan)
        with cache.lock(plan.key):
            features, computed = load_or_extract(cfg, plan, cache)
            record.log_features(features, uri, experiment, computed_here=computed)
        mlflow.log_metric("extract_seconds", features.extract_seconds)
        record.log_bad_clips(features.bad_clips)
        usable = features.usable()
        evaluation = evaluate(
            lambda: build_classifier(cfg.classifier, cfg.seed),
            features.matrix,
            features.labels,
            [split.keep(usable) for split in plan.splits],
            cfg.protocol.mode,
            cfg.protocol.fold_weighting,
        )
        mlflow.log_metrics(evaluation.metrics)
        record.log_outcome(evaluation, plan.index)
    print("\n".join(summary_lines(cfg, plan, features, evaluation, uri, experiment, active.info.run_id)), flush=True)
    return evaluation.metrics["val_accuracy"]
