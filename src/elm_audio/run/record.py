"""What a run records in MLflow besides its metrics: the config as params and tags, the
feature matrix (once per cache key), the per-clip predictions and the figure its kind calls
for (confusion matrix, per-tag AP, predicted against true)."""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import time
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sklearn.metrics import ConfusionMatrixDisplay

from ..classifiers.kinds import ESTIMATOR_KEYS
from ..config import as_yaml
from ..datasets import ClipIndex
from ..evaluation.protocols import Evaluation
from ..settings.settings import Settings
from ..stores import tracking
from ..stores.cache import Features
from ..stores.redaction import as_written_from_environment, flatten, redact_tree
from .plan import Plan

# Config nodes that describe a search rather than this run: kept out of the params.
NOT_PARAMS = ("classifier.search_space", "classifier.kind_search_space", "classifier.paper_grid", "classifier.ignores", "sweep.")


def log_config(settings: Settings, plan: Plan) -> None:
    """The resolved config as params (without the classifier's hyper-parameters that do not
    apply: no gamma for a linear kernel), the cost, config.yaml, the tags and the dataset input.
    Passwords are redacted; values read from the environment are recorded as written."""
    container = redact_tree(as_written_from_environment(settings.config, settings.config_as_written))
    meaningful = settings.classifier.applicable[plan.index.kind]
    inapplicable = {f"classifier.{k}" for k in settings.classifier.keys if k not in meaningful}
    inapplicable |= {f"classifier.estimator.{k[len('classifier.'):]}" for k in inapplicable}
    other_kinds = tuple(f"classifier.{node}." for kind, node in ESTIMATOR_KEYS.items() if kind != plan.index.kind)
    params = {
        k: v for k, v in flatten(container).items()
        if not k.startswith(NOT_PARAMS + other_kinds) and k not in inapplicable
    }  # fmt: skip
    params.update(
        feature_size=settings.names.feature_size,
        feature_dim=plan.profile["feature_dim"],
        n_params=plan.profile["n_params"],
        n_clips=len(plan.index.clips),
        cache_key=plan.key,
    )
    mlflow.log_params(params)
    mlflow.log_metric("gflops_per_clip", plan.profile["gflops_per_clip"])
    mlflow.log_text(as_yaml(container), "config.yaml")
    tags = tracking.run_tags(settings.names)
    if settings.sweep.study is not None:  # a trial of an Optuna sweep (set by the sweeper)
        tags.update({"elm_audio.role": "trial", "sweep_id": settings.sweep.study, "trial": str(settings.sweep.trial)})
    else:
        tags["elm_audio.role"] = "run"
    tags["kind"] = plan.index.kind  # what the metrics are: accuracy, mAP or R² (scoring.py)
    mlflow.set_tags(tags)
    log_dataset(plan)


def clip_list_digest(plan: Plan) -> str:
    """What tells two datasets apart, wherever they are mounted: every clip's id, label, split,
    and the digest of its bytes."""
    listing = "\n".join(
        f"{c.clip_id}\t{c.label}\t{c.split}\t{x.sha256}" for c, x in zip(plan.index.clips, plan.contents)
    )
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


LOG_INPUT_TRIES = 4


def log_dataset(plan: Plan) -> None:
    """MLflow's dataset input (its runs table's Dataset column): name, the clip list's digest,
    and the root as the source."""
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(Path(plan.survey.root).as_uri())
    dataset = MetaDataset(source, name=plan.dataset.name, digest=clip_list_digest(plan))
    for attempt in range(LOG_INPUT_TRIES):
        try:
            mlflow.log_input(dataset, context="clips", tags={"n_clips": str(len(plan.index.clips))})
            return
        except MlflowException:
            # two runs logging one new dataset at the same moment race on MLflow's dataset table
            # (a unique violation, or SQLite's "database is locked"): the second try links it
            if attempt == LOG_INPUT_TRIES - 1:
                raise
            time.sleep(0.5 * 2**attempt)


def start_run(settings: Settings, uri: str, experiment: str) -> str:
    """The run's MLflow run, started (a sweep trial's under its sweep's parent run), named
    uniquely in its experiment and tagged with its process; its id."""
    active = mlflow.start_run(
        experiment_id=experiment,
        parent_run_id=settings.sweep.parent_run_id,
        run_name=tracking.unique_run_name(uri, experiment, tracking.run_name(settings.names, settings.sweep.trial)),
        tags=tracking.process_tags(),
    )
    return active.info.run_id


def end_run(status: str) -> None:
    """The active run ended as ``status`` (FINISHED, FAILED, KILLED)."""
    mlflow.end_run(status)


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics(metrics, step=step)


def tag_incomplete(warning: str) -> None:
    """data check's warning of an incomplete copy, kept with the run."""
    mlflow.set_tag("incomplete_copy", warning)


def log_data_check(text: str) -> None:
    """The headers' check (data_check.txt) in the active run; nothing outside one (python -m
    elm_audio.extract_only extracts outside any run)."""
    if mlflow.active_run() is not None:
        mlflow.log_text(text, "data_check.txt")


def describe_run(lines: list[str]) -> None:
    """The summary the terminal shows, as the run's description in the MLflow UI."""
    mlflow.set_tag("mlflow.note.content", "\n".join(line for line in lines if line.strip()))


def log_pruned(evaluation: Evaluation, line: str) -> None:
    """A pruned sweep trial: the metrics of the folds it fitted, tags ``pruned=true`` and
    ``pruned_after_fold`` (the last fold fitted), and its line as the description. It logs no
    val_accuracy or test_accuracy, so nothing that ranks runs by them takes it for a result."""
    mlflow.log_metrics(evaluation.metrics)
    mlflow.set_tags({"pruned": "true", "pruned_after_fold": evaluation.splits[-1].name})
    mlflow.set_tag("mlflow.note.content", line)


def to_job_log(lines: list[str]) -> None:
    """The summary into Hydra's job log (outputs/.../__main__.log) too, and only there: the
    terminal has it already."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            for line in lines:
                handler.emit(logging.makeLogRecord({"name": "elm_audio", "levelno": logging.INFO, "levelname": "INFO", "msg": line}))


def log_features(features: Features, uri: str, experiment: str, computed_here: bool) -> str | None:
    """Store the matrix once per cache key, in the run that computed it (or, for features
    cached before this store knew them, in the first run that uses them); point the others
    at that run with the ``features_run_id`` tag. Returns that other run's id (None: this run)."""
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
        return owner
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
    return None


PROXIES = ("naswot", "synflow")


def proxies_of(uri: str, run_id: str | None) -> dict[str, float] | None:
    """The zero-cost proxies the features' run logged (the same weights), or None where there is
    no such run or it logged none (a front-end without weights logs none, and has none to compute)."""
    if run_id is None:
        return None
    metrics = MlflowClient(uri).get_run(run_id).data.metrics
    if not any(name.startswith("knn_") for name in metrics):  # a run from before the probes: compute them here
        return None
    return {k: metrics[k] for k in PROXIES if k in metrics}


def log_bad_clips(bad_clips: dict[str, str], silent_clips: list[str]) -> None:
    """The clips left out (tag bad_clips, bad_clips.tsv) and the silent ones (kept; tag
    silent_clips, silent_clips.txt)."""
    if bad_clips:
        mlflow.set_tag("bad_clips", str(len(bad_clips)))
        mlflow.log_text("\n".join(f"{cid}\t{why}" for cid, why in sorted(bad_clips.items())), "bad_clips.tsv")
    if silent_clips:
        mlflow.set_tag("silent_clips", str(len(silent_clips)))
        mlflow.log_text("\n".join(sorted(silent_clips)), "silent_clips.txt")


def predictions_table(evaluation: Evaluation, index: ClipIndex) -> pd.DataFrame:
    """Every test clip's truth and output, from which the run's metrics are recomputed: always
    ``clip_id`` and ``split``; multiclass ``label`` and ``prediction``; multilabel ``true:<tag>``
    (0/1) and ``score:<tag>`` for every tag; regression ``target`` and ``prediction``."""
    clips = index.clips
    if evaluation.kind == "multiclass":
        return pd.DataFrame.from_records(
            [
                {"clip_id": clips[i].clip_id, "label": clips[i].label, "prediction": p, "split": s.name}
                for s in evaluation.splits
                for i, p in zip(s.test_rows, s.test_output)
            ]
        )
    rows = np.concatenate([s.test_rows for s in evaluation.splits])
    table = pd.DataFrame({"clip_id": [clips[i].clip_id for i in rows],
                          "split": [s.name for s in evaluation.splits for _ in s.test_rows]})  # fmt: skip
    output = np.concatenate([s.test_output for s in evaluation.splits])
    if evaluation.kind == "regression":
        return table.assign(target=index.y()[rows], prediction=output)
    tags = index.vocabulary
    truth = pd.DataFrame(index.y()[rows], columns=[f"true:{t}" for t in tags])
    scores = pd.DataFrame(output, columns=[f"score:{t}" for t in tags])
    return pd.concat([table, truth, scores], axis=1)


def tag_ap(evaluation: Evaluation, index: ClipIndex) -> pd.DataFrame:
    """Per tag: its average precision (the mean over the splits that scored it; empty where
    none had a positive clip), its positive test clips, and the name of its ``tag_ap/`` metric."""
    positives = sum(index.y()[s.test_rows].sum(axis=0) for s in evaluation.splits)
    return pd.DataFrame({
        "tag": index.vocabulary,
        "metric": [f"tag_ap/{metric_label(t)}" for t in index.vocabulary],
        "ap": evaluation.tag_ap(),
        "n_positive": positives,
    })  # fmt: skip


def tag_ap_figure(table: pd.DataFrame, frontend: str, mean_ap: float) -> Figure:
    """Each tag's average precision, best first, with its prevalence (a constant scorer's AP) as
    a grey tick: how far above chance each tag is."""
    scored = table.dropna(subset=["ap"]).sort_values("ap", ascending=False)
    fig = Figure(figsize=(max(5.0, 1.2 + 0.22 * len(scored)), 4.0), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(scored))
    ax.bar(x, scored["ap"], color="#4c72b0")
    n_test = table.attrs.get("n_test")
    if n_test:
        ax.scatter(x, scored["n_positive"] / n_test, marker="_", s=120, color="0.4", label="chance (prevalence)", zorder=3)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, fontsize=8)  # above the bars: AP reaches 1
    ax.set_xticks(x, [t if len(t) <= 20 else t[:19] + "…" for t in scored["tag"]], rotation=90)
    ax.set_ylim(0, 1)
    ax.set_ylabel("average precision")
    ax.set_title(f"{frontend}\ntest mAP {mean_ap:.3f} over {len(scored)} tags", fontsize=10, loc="right")
    return fig


def scatter_figure(predictions: pd.DataFrame, frontend: str, r2: float) -> Figure:
    """Predicted against true values of every test clip, the identity line dashed."""
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(predictions["target"], predictions["prediction"], s=10, alpha=0.6, color="#4c72b0")
    low = float(min(predictions["target"].min(), predictions["prediction"].min()))
    high = float(max(predictions["target"].max(), predictions["prediction"].max()))
    ax.plot([low, high], [low, high], "--", color="0.4", linewidth=1)
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.set_title(f"{frontend}\ntest R² {r2:.3f} ({len(predictions)} test clips)", fontsize=10)
    return fig


def confusion_figure(predictions: pd.DataFrame, labels: list[str], frontend: str, accuracy: float) -> Figure:
    """Clips per true and predicted class, titled with ``frontend`` (as the title names it: with
    its size and classifier) and the run's test accuracy (``accuracy``: its metric, the mean over
    folds, which the pooled clips need not match); the class names' length sets the margins
    (names past 30 characters are cut short there: class_accuracy.csv has them whole)."""
    side = max(4.0, 2.0 + 0.6 * len(labels))
    fig = Figure(figsize=(side, side), layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay.from_predictions(
        predictions["label"], predictions["prediction"], labels=labels, ax=ax, xticks_rotation="vertical", colorbar=False,
        display_labels=[label if len(label) <= 30 else label[:29] + "…" for label in map(str, labels)],
    )
    ax.set_title(f"{frontend}\ntest accuracy {100 * accuracy:.1f}% ({len(predictions)} test clips)", fontsize=10)
    return fig


# what MLflow allows in a metric name (its keys hold at most 250 characters)
METRIC_NAME = re.compile(r"[^\w\-. :/]")
LONGEST_LABEL = 200  # of a metric name's label part, after its prefix ("class_accuracy/")


def metric_label(label: str) -> str:
    """``label`` as a metric name's part: itself where MLflow allows it; otherwise its allowed
    characters, cut short, and a digest of the whole label, so that two labels never share a
    name (``a?b`` and ``a*b`` both read ``a_b``)."""
    if not METRIC_NAME.search(label) and len(label) <= LONGEST_LABEL:
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:10]
    return f"{METRIC_NAME.sub('_', label)[: LONGEST_LABEL - 11]}_{digest}"


def class_accuracy(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per class: its test clips (over every split), how many were predicted right, the recall,
    and the name of its ``class_accuracy/`` metric."""
    right = predictions["label"].astype(str) == predictions["prediction"].astype(str)
    table = right.groupby(predictions["label"].astype(str)).agg(["size", "sum"]).rename(columns={"size": "n_clips", "sum": "correct"})
    table = table.assign(recall=table["correct"] / table["n_clips"]).rename_axis("label").reset_index()
    return table.assign(metric=[f"class_accuracy/{metric_label(label)}" for label in table["label"]])


def log_outcome(evaluation: Evaluation, index: ClipIndex) -> None:
    """predictions.csv and what fits the kind: multiclass, the per-class recall (metrics
    ``class_accuracy/<label>``, class_accuracy.csv with the labels as they are) and the confusion
    matrix; multilabel, each tag's AP (``tag_ap/<tag>``, tag_ap.csv) and its bars; regression,
    predicted against true values."""
    predictions = predictions_table(evaluation, index)
    tables = {"predictions.csv": predictions}
    if evaluation.kind == "multiclass":
        tables["class_accuracy.csv"] = classes = class_accuracy(predictions)
        mlflow.log_metrics({r.metric: r.recall for r in classes.itertuples()})
    elif evaluation.kind == "multilabel":
        tables["tag_ap.csv"] = tags = tag_ap(evaluation, index)
        mlflow.log_metrics({r.metric: r.ap for r in tags.itertuples() if np.isfinite(r.ap)})
    with tempfile.TemporaryDirectory() as tmp:
        for name, table in tables.items():
            table.to_csv(Path(tmp) / name, index=False)
            mlflow.log_artifact(str(Path(tmp) / name))
    tags_ = mlflow.get_run(mlflow.active_run().info.run_id).data.tags  # log_config's, set after the run started
    title = f"{tags_['frontend']} ({tags_['feature_size']}, {tags_['classifier']})"
    m = evaluation.metrics
    if evaluation.kind == "multiclass":
        mlflow.log_figure(confusion_figure(predictions, index.labels, title, m["test_accuracy"]), "confusion_matrix.png")
    elif evaluation.kind == "multilabel":
        tables["tag_ap.csv"].attrs["n_test"] = len(predictions)
        mlflow.log_figure(tag_ap_figure(tables["tag_ap.csv"], title, m["test_map"]), "tag_ap.png")
    else:
        mlflow.log_figure(scatter_figure(predictions, title, m["test_r2"]), "scatter.png")
