"""One run: (dataset, front-end, feature size, seed, classifier) -> metrics in MLflow.

The sequence only; each step lives in the module named for it. Returns ``val_accuracy`` so
that a sweeper can maximize it.
"""

from __future__ import annotations

import signal
import sys

import mlflow
import optuna
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig
from sqlalchemy.exc import SQLAlchemyError

from ..datasets.check import survey_incomplete
from ..devices import resolve_device
from ..evaluation.protocols import evaluate, knn_probe
from ..evaluation.scoring import objective, primary
from ..extraction.proxies import proxies
from ..settings.components import build_classifier
from ..stores import tracking
from ..stores.cache import FeatureCache
from ..sweeps import study as sweeps
from . import record
from .features import extract_settings, load_or_extract, share_extraction
from .plan import make_plan, probe_settings
from .summary import pruned_line, summary_lines, trial_line
from .training import train_and_evaluate


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM; its MLflow run is ended as KILLED."""

    def __init__(self, run_id: str | None = None):
        super().__init__(run_id)
        self.run_id = run_id


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def run(cfg: DictConfig) -> float:
    plan = make_plan(cfg)  # bad config or data stops here, before anything is read or logged
    uri = tracking.connect(cfg.tracking.uri)
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM ends the run as Ctrl-C does
    try:
        experiment = tracking.experiment_id(tracking.experiment_name(cfg.dataset.name), uri, primary(plan.index.kind))
        for stale in tracking.end_orphaned_runs(uri, experiment):
            print(f"elm_audio: run {stale} was left RUNNING by a process that is gone; marked KILLED", flush=True)
        return _logged_run(cfg, plan, uri, experiment, FeatureCache(cfg.cache.dir))
    except (MlflowException, SQLAlchemyError, OSError) as err:
        if tracking.disk_full(err):
            raise tracking.full_disk_error(err, uri) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _random_weights(cfg: DictConfig, plan, cache: FeatureCache, uri: str, experiment: str):
    """The method: the random front-end's features (cached), scored by the classifier."""
    share_extraction(cfg, plan, cache)  # runs needing these features compute their chunks together
    with cache.lock(plan.key) as locked:  # one assembles them; the features' run is recorded before others look
        features, computed = load_or_extract(cfg, plan, cache, locked)
        owner = record.log_features(features, uri, experiment, computed_here=computed)
    if not computed and cfg.sweep.trial is None:  # a sweep prints one line a trial
        print(f"features: from the cache, {features.path}", flush=True)
    usable = features.usable()
    splits = [split.keep(usable) for split in plan.splits]
    kind, y = plan.index.kind, plan.index.y()  # the rows of features.matrix are the index's clips
    evaluation = evaluate(
        lambda: build_classifier(cfg.classifier, cfg.seed, kind),
        features.matrix,
        y,
        splits,
        cfg.protocol.mode,
        cfg.protocol.fold_weighting,
        report=sweeps.fold_reporter(cfg.sweep) if cfg.sweep.pruner is not None else None,
        kind=kind,
    )
    if evaluation.stopped:  # pruned: its folds so far are its record, and the sweeper is told so
        line = pruned_line(cfg, evaluation, mlflow.active_run().info.run_id)
        record.log_pruned(evaluation, line)
        raise optuna.TrialPruned(line)
    probe = probe_settings(cfg)
    evaluation.metrics.update(knn_probe(features.matrix, y, splits, probe.knn_k, cfg.protocol.fold_weighting, kind))
    # the proxies, like the features, are computed once per cache key: other runs copy them
    known = record.proxies_of(uri, owner)
    if known is None:
        clips = [plan.index.clips[i] for i in splits[0].train]
        known = proxies(plan.frontend, clips, extract_settings(cfg, plan).inputs, probe.proxy_batch, resolve_device(cfg.device))
    evaluation.metrics.update(known)
    return evaluation, features


def _logged_run(cfg: DictConfig, plan, uri: str, experiment: str, cache: FeatureCache) -> float:
    active = mlflow.start_run(
        experiment_id=experiment,
        parent_run_id=cfg.sweep.parent_run_id,
        run_name=tracking.unique_run_name(uri, experiment, tracking.run_name(cfg)),
        tags=tracking.process_tags(),
    )
    try:
        record.log_config(cfg, plan)
        incomplete = survey_incomplete(plan.dataset, plan.survey)
        if incomplete:  # the same warning as data check's, said and kept with the run
            print(f"elm_audio: warning: {incomplete}", file=sys.stderr, flush=True)
            mlflow.set_tag("incomplete_copy", incomplete)
        if cfg.weights.name == "trained":
            evaluation, features = train_and_evaluate(cfg, plan, cache)
        else:
            evaluation, features = _random_weights(cfg, plan, cache, uri, experiment)
        mlflow.log_metric("extract_seconds", features.extract_seconds)
        record.log_bad_clips(features.bad_clips, features.silent_clips)
        mlflow.log_metrics(evaluation.metrics)
        record.log_outcome(evaluation, plan.index)
        lines = summary_lines(cfg, plan, features, evaluation, uri, experiment, active.info.run_id)
        record.describe_run(lines)
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise Interrupted(active.info.run_id) from None
    except optuna.TrialPruned as pruned:  # finished, as far as its pruner let it: tagged pruned, no aggregates
        mlflow.end_run("FINISHED")
        record.to_job_log([str(pruned)])
        print(pruned, flush=True)
        raise
    except BaseException as err:
        try:
            mlflow.end_run("FAILED")
        except (MlflowException, SQLAlchemyError, OSError):
            if not tracking.disk_full(err):  # on a full store the run stays RUNNING: the next run ends it
                raise
        raise
    mlflow.end_run("FINISHED")
    record.to_job_log(lines)
    in_sweep = cfg.sweep.trial is not None
    print(trial_line(cfg, evaluation, active.info.run_id) if in_sweep else "\n".join(lines), flush=True)
    return evaluation.metrics[objective(evaluation.kind)]
