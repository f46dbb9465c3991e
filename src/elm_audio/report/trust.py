"""What the report takes from the MLflow store, checked before it is used.

Whoever can write the store (a colleague on a shared server) chooses every tag, param and metric
of a run. A value that becomes a path must have the form elm_audio writes: a features key
(cache.cache_key: 20 lowercase hex digits) and a run id (MLflow's: 32) are one folder name each,
and the dataset, feature size, classifier and preset, which name the report's folder and files,
and the task kind are plain names. Numbers must lie in their range: accuracies, mAP, ROC-AUC
and AP in [0, 1], R² finite and at most 1, MAE and costs finite and not negative, a seed as
elm_audio accepts one. A run that says otherwise is left out of what needs the value, and the
report names it with the reason.
"""

from __future__ import annotations

import math
import re
import sys

import pandas as pd

from . import kinds

FEATURES_KEY = re.compile(r"[0-9a-f]{20}")
RUN_ID = re.compile(r"[0-9a-f]{32}")
RUN_ID_FORM = "an MLflow run id (32 lowercase hex digits)"
# a run's pointers to its features: a cache entry's folder, a run whose artifacts hold them
POINTERS = {"features_key": (FEATURES_KEY, "a feature cache key (20 lowercase hex digits)"), "features_run_id": (RUN_ID, RUN_ID_FORM)}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # one file name's part, never '..' or a '/'
IN_FILE_NAMES = ("feature_size", "classifier", "experiment")
# never infinite in a run elm_audio logged (the proxies naswot and synflow may be: log 0, an overflow)
NOT_NEGATIVE = {"gflops_per_clip": "metric", "extract_seconds": "metric", "n_test_clips": "metric", "n_clips": "param", "n_params": "param"}
MAX_SEED = 2**32 - 1  # validate.py's bound
# MLflow's SQL stores keep +-inf as +-the largest float: a value that large was infinite when logged
LARGEST = sys.float_info.max
ADVICE = "elm_audio never logs that: correct or delete the run in MLflow"


def quoted(value: object, limit: int = 48) -> str:
    """A value from the store as a message quotes it: its repr (line breaks and control
    characters escaped), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def absent(value: object) -> bool:
    """Never logged: MLflow's table holds None or NaN there."""
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def finite(value: float) -> bool:
    return math.isfinite(value) and abs(value) < LARGEST


def dataset_problem(dataset: str) -> str | None:
    """Why an experiment's dataset part cannot name the report's folder (None: it can)."""
    if NAME.fullmatch(dataset):
        return None
    return f"{quoted(dataset)} is not a dataset name (letters, digits, '_', '-', '.'), and the report's folder is named by it"


def seed_of(value: object) -> int | None:
    """A seed param as a number; None where it is not a seed elm_audio accepts."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and 0 <= number <= MAX_SEED else None


def name_problem(run: pd.Series) -> str | None:
    for tag in IN_FILE_NAMES:
        value = run[tag]
        if absent(value):
            return f"it has no tag {tag}"
        if not (isinstance(value, str) and NAME.fullmatch(value)):
            return f"tag {tag}={quoted(value)} is not a name (letters, digits, '_', '-', '.'), and the report's file names are made of it"
    return None


def kind_problem(run: pd.Series) -> str | None:
    kind = run.get("kind", kinds.MULTICLASS)
    if absent(kind) or kind in kinds.KINDS:
        return None
    return f"tag kind={quoted(kind)} is not a task kind ({', '.join(kinds.KINDS)})"


def scored_metrics(run: pd.Series) -> list[tuple[str, float, kinds.Metric]]:
    """Every score a run holds, as (the name it was logged under, value, the metric it is):
    its kind's primary metric (val, test, kNN, per split), per class or per tag, the secondary
    metric and a multilabel run's chance mAP."""
    kind = run.get("kind", kinds.MULTICLASS)
    p = kinds.primary(kind if kind in kinds.KINDS else kinds.MULTICLASS)
    found = [(f"{prefix}_{p.name}", run.get(f"{prefix}_score", run.get(f"{prefix}_{p.name}")), p) for prefix in ("val", "test", "knn")]
    found += [(f"{split}_test_{p.name}", v, p) for split, v in (run.get("folds") or {}).items()]
    found += [(f"{split}_knn_{p.name}", v, p) for split, v in (run.get("knn_folds") or {}).items()]
    found += [(f"class_accuracy/{label}", v, kinds.ACCURACY) for label, v in (run.get("class_accuracy") or {}).items()]
    found += [(f"tag_ap/{tag}", v, kinds.TAG_AP) for tag, v in (run.get("tag_ap") or {}).items()]
    s = kinds.secondary(kind)
    if s is not None:
        found.append((f"test_{s.name}", run.get("secondary_score"), s))
        found += [(f"{split}_test_{s.name}", v, s) for split, v in (run.get("secondary_folds") or {}).items()]
    if kind == kinds.MULTILABEL:
        found.append(("test_chance_map", run.get("chance_score"), kinds.MAP))
    return found


def number_problem(run: pd.Series) -> str | None:
    """The first metric (or numeric param) outside its range (accuracies, mAP, ROC-AUC and AP in
    [0, 1]; R² at most 1, however negative; MAE not negative); NaN is a value never logged."""
    for metric, v, kind in scored_metrics(run):
        if v is not None and not absent(v) and (problem := kind.problem(metric, float(v))):
            return problem
    for name, kind in NOT_NEGATIVE.items():
        v = run[name]
        if not absent(v) and not (finite(v) and v >= 0):
            return f"{kind} {name} is {'negative' if finite(v) else 'not finite'}"
    if not absent(run["seed"]) and seed_of(run["seed"]) is None:
        return f"param seed={quoted(run['seed'])} is not a seed (a whole number from 0 to {MAX_SEED:,})"
    return None


def why_distrusted(run: pd.Series) -> str | None:
    """Why what the store says of a run cannot enter the report at all (None: it can)."""
    if not (isinstance(run["run_id"], str) and RUN_ID.fullmatch(run["run_id"])):
        return f"its id is not {RUN_ID_FORM}; {ADVICE}"
    problem = name_problem(run) or kind_problem(run) or number_problem(run)
    return f"{problem}; {ADVICE}" if problem else None


def features_problem(run: pd.Series) -> str | None:
    """Why a run's pointers to its features cannot be followed (None: they can, or there are none)."""
    for tag, (form, described) in POINTERS.items():
        value = run[tag]
        if not absent(value) and not (isinstance(value, str) and form.fullmatch(value)):
            return f"tag {tag}={quoted(value)} is not {described}; {ADVICE}"
    return None
