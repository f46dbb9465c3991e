"""The lines a finished run prints: what ran, its scores, and where it was logged."""

from __future__ import annotations

from ..evaluation.protocols import Evaluation, running_objective
from ..evaluation.scoring import SECONDARY, primary
from ..settings.settings import Settings
from ..stores import tracking
from ..stores.cache import Features
from ..stores.redaction import redact
from .plan import Plan

HYPER_PARAMETERS = ("kernel", "C", "gamma", "epsilon", "hidden_units", "alpha", "hidden_layers", "hidden_size", "learning_rate", "dropout")


def hyper_parameters(settings: Settings, kind: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.classifier.values(kind, HYPER_PARAMETERS).items())


def trial_line(settings: Settings, evaluation: Evaluation, run_id: str) -> str:
    """A sweep prints one line a trial; the sweep's end says the rest."""
    m, name = evaluation.metrics, primary(evaluation.kind)
    hyper = hyper_parameters(settings, evaluation.kind)
    return f"trial {settings.sweep.trial}: val_{name} {m[f'val_{name}']:.4f}, test_{name} {m[f'test_{name}']:.4f} ({hyper}; run {run_id})"


def pruned_line(settings: Settings, evaluation: Evaluation, run_id: str) -> str:
    """A pruned trial's line: how far it got and its running objective there."""
    last = evaluation.splits[-1].name
    so_far = running_objective(evaluation.splits, evaluation.fold_weighting)
    hyper = hyper_parameters(settings, evaluation.kind)
    return (
        f"trial {settings.sweep.trial}: pruned after {last} ({len(evaluation.splits)} of {evaluation.planned} folds), "
        f"val_{primary(evaluation.kind)} so far {so_far:.4f} ({hyper}; run {run_id})"
    )


def task(index) -> str:
    """What the dataset asks: its classes, its tags, or a number."""
    if index.kind == "multilabel":
        return f"{len(index.vocabulary)} tags"
    if index.kind == "regression":
        return "regression"
    return f"{len(index.labels)} classes"


def summary_lines(
    settings: Settings, plan: Plan, features: Features, evaluation: Evaluation, uri: str, experiment: str, run_id: str
) -> list[str]:
    m, name = evaluation.metrics, primary(evaluation.kind)
    shown_as = "" if evaluation.kind == "multiclass" else f"{name} "  # accuracy, as it always was, unnamed
    index = plan.index
    unit = f"{len(index.folds)} folds" if index.protocol == "folds" else "train/validation/test"
    names = settings.names
    hyper = {k: settings.classifier.keys[k] for k in HYPER_PARAMETERS if k in settings.classifier.applicable[evaluation.kind]}
    skipped = f", {len(features.bad_clips)} skipped" if features.bad_clips else ""
    warnings = []
    if features.silent_clips:
        warnings.append(f"  warning      {len(features.silent_clips)} silent clip(s) kept, e.g. {features.silent_clips[0]} (artifact silent_clips.txt)")
    return [
        "",
        "elm_audio run finished",
        f"  dataset      {names.dataset}: {len(index.clips)} clips{skipped}, {task(index)}, "
        f"{unit}, {names.mode} protocol",
        (
            f"  front-end    {names.frontend}, imported ({plan.profile['feature_dim']} values)"
            if plan.profile["input"] == "imported"
            else f"  front-end    {names.frontend}, feature size {names.feature_size} "
            f"({plan.profile['feature_dim']} values, seed {settings.seed})"
        ),
        (
            f"  classifier   linear softmax, trained end to end with the front-end (weights=trained, lr={settings.recipe.lr})"
            if settings.trained
            else f"  classifier   {names.classifier} " + ", ".join(f"{k}={v}" for k, v in hyper.items())
        ),
        f"  validation   {shown_as}{m[f'val_{name}']:.4f}",
        f"  test         {shown_as}{m[f'test_{name}']:.4f} +/- {m[f'test_{name}_std']:.4f}"
        + "".join(f", {extra} {m[f'test_{extra}']:.4f}" for extra in SECONDARY[evaluation.kind]),
        f"  logged       run {run_id} in experiment {tracking.experiment_name(names.dataset)} ({redact(uri)})",
        f"  browse       {tracking.ui_link(uri, experiment)}",
        f"  this run     {tracking.ui_url(uri, experiment, run_id)}",
        *warnings,
    ]
