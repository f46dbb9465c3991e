"""One run: (dataset, front-end, feature size, seed, classifier) -> metrics in MLflow.

The sequence only; each step lives in the module named for it. Returns ``val_accuracy`` so
that a sweeper can maximize it.
"""

from __future__ import annotations

import signal
import sys

import optuna
from omegaconf import DictConfig

from ..datasets.check import survey_incomplete
from ..devices import give_back_memory, keep_freed_memory
from ..evaluation.protocols import evaluate, knn_probe
from ..evaluation.scoring import objective, primary
from ..extraction.proxies import proxies
from ..settings.settings import Settings, load
from ..stores import tracking
from ..stores.cache import FeatureCache
from ..sweeps.pruning import fold_reporter
from . import record
from .features import load_or_extract, share_extraction
from .plan import Plan, make_plan
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
    """The entry of a run: its config read once (settings.load), then the parts handed down."""
    settings = load(cfg)  # a bad value stops here, before anything is read or logged
    plan = make_plan(settings)  # bad data stops here, before anything is logged
    uri = tracking.connect(settings.tracking_uri)
    keep_freed_memory()  # large maps and the classifiers' matrices reuse memory: faster, at the peak's size
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM ends the run as Ctrl-C does
    try:
        experiment = tracking.experiment_id(tracking.experiment_name(settings.names.dataset), uri, primary(plan.index.kind))
        for stale in tracking.end_orphaned_runs(uri, experiment):
            print(f"elm_audio: run {stale} was left RUNNING by a process that is gone; marked KILLED", flush=True)
        return _logged_run(settings, plan, uri, experiment, FeatureCache(settings.cache_dir))
    except tracking.STORE_ERRORS as err:
        if tracking.disk_full(err):
            raise tracking.full_disk_error(err, uri) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        give_back_memory()  # a sweep's next trial, in this process, starts from the memory it needs


def _random_weights(settings: Settings, plan: Plan, cache: FeatureCache, uri: str, experiment: str):
    """The method: the random front-end's features (cached), scored by the classifier."""
    extraction, device = settings.extraction, settings.device
    share_extraction(extraction, device, plan, cache)  # runs needing these features compute their chunks together
    with cache.lock(plan.key) as locked:  # one assembles them; the features' run is recorded before others look
        features, computed = load_or_extract(extraction, device, plan, cache, locked)
        owner = record.log_features(features, uri, experiment, computed_here=computed)
    if not computed and settings.sweep.trial is None:  # a sweep prints one line a trial
        print(f"features: from the cache, {features.path}", flush=True)
    usable = features.usable()
    splits = [split.keep(usable) for split in plan.splits]
    kind, y = plan.index.kind, plan.index.y()  # the rows of features.matrix are the index's clips
    evaluation = evaluate(
        lambda: settings.classifier.build(kind),
        features.matrix,
        y,
        splits,
        settings.protocol.mode,
        settings.protocol.fold_weighting,
        report=fold_reporter(settings.sweep.node()) if settings.sweep.pruner is not None else None,
        kind=kind,
    )
    if evaluation.stopped:  # pruned: its folds so far are its record, and the sweeper is told so
        line = pruned_line(settings, evaluation, record.active_run_id())
        record.log_pruned(evaluation, line)
        raise optuna.TrialPruned(line)
    probe = settings.probe
    evaluation.metrics.update(knn_probe(features.matrix, y, splits, probe.knn_k, settings.protocol.fold_weighting, kind))
    # the proxies, like the features, are computed once per cache key: other runs copy them
    known = record.proxies_of(uri, owner)
    if known is None:
        clips = [plan.index.clips[i] for i in splits[0].train]
        known = proxies(plan.frontend, clips, extraction.inputs, probe.proxy_batch, device)
    evaluation.metrics.update(known)
    return evaluation, features


def _logged_run(settings: Settings, plan: Plan, uri: str, experiment: str, cache: FeatureCache) -> float:
    run_id = record.start_run(settings, uri, experiment)
    try:
        record.log_config(settings, plan)
        incomplete = survey_incomplete(plan.dataset, plan.survey)
        if incomplete:  # the same warning as data check's, said and kept with the run
            print(f"elm_audio: warning: {incomplete}", file=sys.stderr, flush=True)
            record.tag_incomplete(incomplete)
        if settings.trained:
            evaluation, features = train_and_evaluate(settings, plan, cache)
        else:
            evaluation, features = _random_weights(settings, plan, cache, uri, experiment)
        record.log_metrics({"extract_seconds": features.extract_seconds})
        record.log_bad_clips(features.bad_clips, features.silent_clips)
        record.log_metrics(evaluation.metrics)
        record.log_outcome(evaluation, plan.index)
        lines = summary_lines(settings, plan, features, evaluation, uri, experiment, run_id)
        record.describe_run(lines)
    except KeyboardInterrupt:
        record.end_run("KILLED")
        raise Interrupted(run_id) from None
    except optuna.TrialPruned as pruned:  # finished, as far as its pruner let it: tagged pruned, no aggregates
        record.end_run("FINISHED")
        record.to_job_log([str(pruned)])
        print(pruned, flush=True)
        raise
    except BaseException as err:
        try:
            record.end_run("FAILED")
        except tracking.STORE_ERRORS:
            if not tracking.disk_full(err):  # on a full store the run stays RUNNING: the next run ends it
                raise
        raise
    record.end_run("FINISHED")
    record.to_job_log(lines)
    in_sweep = settings.sweep.trial is not None
    print(trial_line(settings, evaluation, run_id) if in_sweep else "\n".join(lines), flush=True)
    return evaluation.metrics[objective(evaluation.kind)]
