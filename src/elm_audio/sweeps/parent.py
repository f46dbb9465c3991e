"""The sweep's parent run in MLflow (through stores.tracking): created before the first trial,
the trials' runs its children; after an interruption, the trials and runs left behind settled;
after the last trial, the best trial, the nested test score and a figure of the objective. And
the lines a sweep prints before and after its trials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..evaluation.scoring import objective, primary
from ..stores import tracking
from ..stores.redaction import redact, redact_value
from .pruning import NO_PRUNER, pruner_label
from .storage import JOURNAL_PREFIX, storage_label
from .trials import completed, interrupted, pruned, trial_counts


class SweepRun:
    """The sweep's parent run: created before the first trial, summarized after the last."""

    def __init__(
        self,
        tracking_uri: str | None,
        names: tracking.RunNames,
        study: optuna.Study,
        storage_url: str | None,
        space: Mapping[str, str],
        pruner: Mapping[str, Any] | None = None,
    ):
        self.uri = tracking.connect(tracking_uri)
        self.experiment = tracking.experiment_id(tracking.experiment_name(names.dataset), self.uri)
        self.study = study
        tags = {
            **tracking.run_tags(names),
            "elm_audio.role": "sweep",
            "sweep_id": study.study_name,
            "optuna.storage": storage_label(storage_url),
        }
        name = f"sweep-{names.frontend}-{names.feature_size}-{names.classifier}-seed{names.seed}"
        self.run_id = tracking.create_run(self.uri, self.experiment, {**tags, **tracking.process_tags()}, name)
        self.space = space
        self.pruner = pruner  # the hydra.sweeper.pruner node of a sweep that prunes; None: it does not

    def log_plan(self, n_trials: int) -> None:
        """The search space and how many trials this sweeper runs (known once interrupted
        trials are settled)."""
        # Hydra's +key / ++key / ~key say how to override; MLflow's param names cannot hold them
        params = {f"search_space.{k.lstrip('+~')}": redact_value(v) for k, v in self.space.items()}
        params.update(
            n_trials=n_trials,
            study_name=self.study.study_name,
            sampler=type(self.study.sampler).__name__,
            pruner=pruner_label(self.pruner) if self.pruner else NO_PRUNER,
        )
        tracking.log_params(self.uri, self.run_id, params)

    def child_runs(self) -> list[tracking.Run]:
        return tracking.search_runs(
            self.uri, self.experiment, f"tags.sweep_id = '{self.study.study_name}' and tags.`elm_audio.role` = 'trial'"
        )

    def end_gone_runs(self) -> list[str]:
        """After an interruption, end as KILLED the trial runs still RUNNING whose process is
        proven gone (a killed joblib worker's); trials running elsewhere (SLURM jobs) end their
        own runs. Returns the runs ended."""
        running = tracking.search_runs(
            self.uri, self.experiment, f"tags.mlflow.parentRunId = '{self.run_id}' and attributes.status = 'RUNNING'"
        )
        ended = [run.info.run_id for run in running if tracking.owner_gone(run.data.tags)]
        for run_id in ended:
            tracking.end_run(self.uri, run_id, "KILLED")
        return ended

    def end_lost_run(self, trial: int) -> list[str]:
        """A trial whose job died (a SLURM job cancelled or killed) may leave its MLflow run
        RUNNING: end it as KILLED. Returns the runs ended."""
        ended = []
        running = tracking.search_runs(
            self.uri, self.experiment, f"tags.mlflow.parentRunId = '{self.run_id}' and attributes.status = 'RUNNING'"
        )
        for run in running:
            if run.data.tags.get("trial") == str(trial) or run.info.run_name.endswith(f"-trial{trial}"):
                tracking.end_run(self.uri, run.info.run_id, "KILLED")
                ended.append(run.info.run_id)
        return ended

    def settle_interrupted(self) -> list[str]:
        """An interrupted sweeper leaves its last trials RUNNING in Optuna for ever: settle them
        (`settle`). Returns what was done, a line per trial."""
        return self.settle(interrupted(self.study))

    def settle(self, lost: list[optuna.trial.FrozenTrial]) -> list[str]:
        """Trials that were interrupted: one whose MLflow run finished gets the value that run
        returned (the work is not redone); the others fail, and a grid point is queued again.
        Returns what was done, a line per trial."""
        if not lost:
            return []
        finished = {r.data.tags.get("trial"): r for r in self.child_runs() if r.info.status == "FINISHED"}
        lines = []
        for trial in lost:
            run = finished.get(str(trial.number))
            if run is not None and run.data.tags.get("pruned") == "true":
                self.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
                lines.append(f"trial {trial.number} was interrupted after its run {run.info.run_id} was pruned: marked pruned")
            elif run is not None and objective(run_kind(run)) in run.data.metrics:
                self.study.tell(trial.number, run.data.metrics[objective(run_kind(run))], skip_if_finished=True)
                lines.append(f"trial {trial.number} was interrupted after its run {run.info.run_id} finished: its result is kept")
            else:
                self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                lines.append(f"trial {trial.number} was interrupted before its run finished: marked failed")
                if "grid_keys" in trial.user_attrs:  # a grid point is run again, as the grid promises every point
                    self.study.enqueue_trial(trial.params, user_attrs={"grid_keys": trial.user_attrs["grid_keys"]})
        return lines

    def finish(self, status: str = "FINISHED") -> dict[str, Any]:
        """Record the best trial (of the whole study, all servers), its params and test
        accuracy, the nested test accuracy, and a figure of the objective across trials; end the
        run with ``status`` (FINISHED, FAILED or KILLED)."""
        summary: dict[str, Any] = {}
        try:
            trials = completed(self.study)
            n_pruned = len(pruned(self.study))
            if n_pruned:
                tracking.log_metric(self.uri, self.run_id, "n_trials_pruned", n_pruned)
            if trials:
                best = self.study.best_trial
                # a pruned trial's folds are no result: the nested figure chooses among complete trials
                children = {r.data.tags.get("trial"): r for r in self.child_runs() if r.data.tags.get("pruned") != "true"}
                best_run = children.get(str(best.number))
                name = primary(next((run_kind(r) for r in children.values()), "multiclass"))
                summary = {"trial": best.number, "metric": name, f"val_{name}": best.value, "params": best.params}
                summary["counts"] = trial_counts(self.study)
                if self.pruner is not None:
                    summary["pruner"] = self.pruner
                tracking.log_metric(self.uri, self.run_id, f"best_val_{name}", best.value)
                tracking.log_metric(self.uri, self.run_id, "n_trials_complete", len(trials))
                tracking.log_params(self.uri, self.run_id, {f"best.{k}": v for k, v in best.params.items()})
                tracking.set_tag(self.uri, self.run_id, "best_trial", str(best.number))
                if best_run is not None:
                    summary["run_id"] = best_run.info.run_id
                    summary[f"test_{name}"] = best_run.data.metrics.get(f"test_{name}")
                    tracking.set_tag(self.uri, self.run_id, "best_run_id", best_run.info.run_id)
                    for metric in (f"test_{name}", f"test_{name}_std"):
                        if metric in best_run.data.metrics:
                            tracking.log_metric(self.uri, self.run_id, f"best_{metric}", best_run.data.metrics[metric])
                nested = nested_test_score([r.data.metrics for r in children.values()], name)
                if nested is not None:
                    summary[f"nested_test_{name}"] = nested
                    tracking.log_metric(self.uri, self.run_id, f"nested_test_{name}", nested)
                tracking.log_figure(self.uri, self.run_id, objective_figure(trials, name), "objective.png")
                description = summary_lines(summary, self.study.study_name, self)
                tracking.set_tag(self.uri, self.run_id, "mlflow.note.content", "\n".join(description))
        finally:
            tracking.end_run(self.uri, self.run_id, status)
        return summary


def counts_line(counts: Mapping[str, int]) -> str:
    """``12 trials: 7 complete, 5 pruned``."""
    return f"{sum(counts.values())} trials: " + ", ".join(f"{n} {state}" for state, n in counts.items())


def summary_lines(summary: Mapping[str, Any], study_name: str, sweep_run: "SweepRun") -> list[str]:
    name = summary["metric"]
    lines = [f"best trial #{summary['trial']} of study {study_name}: val_{name} {summary[f'val_{name}']:.4f}"]
    lines.append(f"  {counts_line(summary['counts'])}" + (f"; pruner {pruner_label(summary['pruner'])}" if "pruner" in summary else ""))
    if summary.get(f"test_{name}") is not None:
        lines.append(f"  its test_{name} {summary[f'test_{name}']:.4f} (run {summary.get('run_id')})")
    if f"nested_test_{name}" in summary:
        spoken = "accuracy" if name == "accuracy" else name
        lines.append(f"  nested test {spoken} (each fold's best validation trial) {summary[f'nested_test_{name}']:.4f}")
    lines.append("  params " + ", ".join(f"{k}={v}" for k, v in summary["params"].items()))
    lines.append(f"  sweep run {sweep_run.run_id} in {redact(sweep_run.uri)}")
    return lines


def look_lines(sweep_run: "SweepRun", storage_url: str | None, study_name: str) -> list[str]:
    """How to look at a finished sweep: its experiment's runs table (trials ranked with the other
    runs) and its parent run in the MLflow UI; the study in Optuna's dashboard where it is stored."""
    lines = [
        f"  browse       {tracking.ui_link(sweep_run.uri, sweep_run.experiment)}",
        f"  parent run   {tracking.ui_url(sweep_run.uri, sweep_run.experiment, sweep_run.run_id)}",
    ]
    if storage_url:
        where = storage_url[len(JOURNAL_PREFIX) :] if storage_url.startswith(JOURNAL_PREFIX) else storage_label(storage_url)
        lines.append(f"  study        optuna-dashboard {where}   (pip install optuna-dashboard; study {study_name})")
    return lines


def nested_test_score(runs_metrics: list[Mapping[str, float]], name: str = "accuracy") -> float | None:
    """For each test fold k, the trial with the best validation score (metric ``name``) on k's
    validation fold, scored on fold k: a test figure no hyper-parameter choice has seen (honest
    folds only)."""
    val, test = f"_val_{name}", f"_test_{name}"
    folds = sorted({m[: -len(val)] for r in runs_metrics for m in r if re.fullmatch(rf"fold\d+{val}", m)})
    if not folds:
        return None
    scores = []
    for fold in folds:
        candidates = [r for r in runs_metrics if f"{fold}{val}" in r and f"{fold}{test}" in r]
        best = max(candidates, key=lambda r: r[f"{fold}{val}"])
        scores.append(best[f"{fold}{test}"])
    return float(np.mean(scores))


def run_kind(run) -> str:
    """The task kind a trial's run was scored on (runs from before kinds: multiclass)."""
    return run.data.tags.get("kind", "multiclass")


def objective_figure(trials: list[optuna.trial.FrozenTrial], name: str = "accuracy") -> Figure:
    """val_<metric> per trial and the best so far; the legend above the axes, where it hides no
    trial, and whole trial numbers on the x axis."""
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    fig = Figure(figsize=(max(6.0, min(12.0, 3.0 + 0.08 * len(numbers))), 3.8), layout="constrained")
    ax = fig.subplots()
    ax.scatter(numbers, values, s=18, label="trial", zorder=3)
    ax.step(numbers, np.maximum.accumulate(values), where="post", color="C1", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (Optuna's number)")
    ax.set_ylabel(f"val_{name} (the objective)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=2, fontsize=8, frameon=False)
    return fig


def header_line(study_name: str, storage_url: str | None, n_trials: int, sweep_run: "SweepRun") -> str:
    """What a sweep prints before its trials, which then print one line each."""
    return f"sweep: {n_trials} trial(s) of study {study_name} ({storage_label(storage_url)}), parent run {sweep_run.run_id}"
