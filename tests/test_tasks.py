"""Every task kind end to end, as a user runs it: multi-label tagging and regression on the
built-in dataset's generated variants, through the same runner, sweeper and MLflow records as
single-label classification; every logged figure recomputed with scikit-learn from the run's
predictions.csv alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.runs import QUICK, logged_runs, run_here, sweep_here
from sklearn.metrics import (
    average_precision_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from elm_audio.config import ConfigError, compose
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load

FAST = [*QUICK, "frontend=mfcc"]  # the MFCC baseline: features in a second, the kinds' paths are the same


def predictions(client, run, tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv", str(tmp_path)))


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("multilabel")
    out, _ = run_here(cwd, "dataset.kind=multilabel", "classifier=linear", *FAST)
    client, (run,) = logged_runs(cwd)
    return cwd, out, client, run


def test_a_multilabel_run_logs_map_roc_auc_and_per_tag_ap_that_its_predictions_recompute(multilabel, tmp_path):
    _, out, client, run = multilabel
    m = run.data.metrics
    assert run.data.tags["kind"] == "multilabel"
    assert "accuracy" not in " ".join(m)  # a tagging run has no accuracy to be compared on
    table = predictions(client, run, tmp_path)
    tags = [c.removeprefix("true:") for c in table.columns if c.startswith("true:")]
    assert list(table.columns[:2]) == ["clip_id", "split"] and [f"score:{t}" for t in tags] == list(table.columns[2 + len(tags):])
    assert sorted(tags) == ["clicks", "hum", "noise", "tone"]
    per_fold, rocs, chances, ap_by_tag = [], [], [], []
    for k in (1, 2, 3):
        fold = table[table["split"] == f"fold{k}"]
        truth, scores = fold[[f"true:{t}" for t in tags]].to_numpy(), fold[[f"score:{t}" for t in tags]].to_numpy()
        kept = truth.sum(axis=0) > 0
        ap = np.full(len(tags), np.nan)
        ap[kept] = [average_precision_score(truth[:, i], scores[:, i]) for i in np.flatnonzero(kept)]
        both = kept & (truth.sum(axis=0) < len(truth))
        per_fold.append(np.nanmean(ap))
        rocs.append(np.mean([roc_auc_score(truth[:, i], scores[:, i]) for i in np.flatnonzero(both)]))
        chances.append(truth[:, kept].mean(axis=0).mean())
        ap_by_tag.append(ap)
        assert m[f"fold{k}_test_map"] == pytest.approx(per_fold[-1], abs=1e-9)
        assert m[f"fold{k}_test_roc_auc"] == pytest.approx(rocs[-1], abs=1e-9)
        assert m[f"fold{k}_tags_left_out"] == (~kept).sum()
    assert m["test_map"] == pytest.approx(np.mean(per_fold)) and m["test_map_std"] == pytest.approx(np.std(per_fold))
    assert m["test_roc_auc"] == pytest.approx(np.mean(rocs))
    assert m["test_chance_map"] == pytest.approx(np.mean(chances))
    assert m["test_map"] > m["test_chance_map"] + 0.2  # the generated sources are heard
    for tag, ap in zip(tags, np.nanmean(ap_by_tag, axis=0)):
        assert m[f"tag_ap/{tag}"] == pytest.approx(ap)
    listed = pd.read_csv(client.download_artifacts(run.info.run_id, "tag_ap.csv", str(tmp_path)))
    assert list(listed.columns) == ["tag", "metric", "ap", "n_positive"]
    assert dict(zip(listed["tag"], listed["n_positive"])) == {t: int(table[f"true:{t}"].sum()) for t in tags}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "tag_ap.png" in artifacts and "confusion_matrix.png" not in artifacts
    assert f"test         map {m['test_map']:.4f} +/- {m['test_map_std']:.4f}, roc_auc {m['test_roc_auc']:.4f}" in out
    assert "4 tags" in out


def test_a_regression_run_logs_r2_and_mae_that_its_predictions_recompute(tmp_path):
    out, _ = run_here(tmp_path, "dataset.kind=regression", "classifier=elm", *FAST)
    client, (run,) = logged_runs(tmp_path)
    m = run.data.metrics
    assert run.data.tags["kind"] == "regression"
    table = predictions(client, run, tmp_path)
    assert list(table.columns) == ["clip_id", "split", "target", "prediction"]
    r2, mae = [], []
    for k in (1, 2, 3):
        fold = table[table["split"] == f"fold{k}"]
        r2.append(r2_score(fold["target"], fold["prediction"]))
        mae.append(mean_absolute_error(fold["target"], fold["prediction"]))
        assert m[f"fold{k}_test_r2"] == pytest.approx(r2[-1]) and m[f"fold{k}_test_mae"] == pytest.approx(mae[-1])
    assert m["test_r2"] == pytest.approx(np.mean(r2)) and m["test_mae"] == pytest.approx(np.mean(mae))
    assert 60 <= table["target"].min() and table["target"].max() <= 180  # tempo in BPM, the generated beat's
    assert "knn_r2" in m and "val_r2" in m
    assert "scatter.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert f"validation   r2 {m['val_r2']:.4f}" in out


def test_a_multilabel_sweep_maximizes_val_map_and_its_parent_records_the_best(tmp_path):
    printed = sweep_here(tmp_path, "dataset.kind=multilabel", "classifier=linear", "hydra.sweeper.n_trials=3",
                         "hydra/sweeper/pruner=none", *FAST)  # fmt: skip
    client, runs = logged_runs(tmp_path)
    trials = [r for r in runs if r.data.tags.get("elm_audio.role") == "trial"]
    (parent,) = [r for r in runs if r not in trials]
    assert len(trials) == 3 and all(r.data.tags["kind"] == "multilabel" for r in trials)
    best = max(trials, key=lambda r: r.data.metrics["val_map"])
    assert parent.data.metrics["best_val_map"] == pytest.approx(best.data.metrics["val_map"])
    assert parent.data.metrics["best_test_map"] == pytest.approx(best.data.metrics["test_map"])
    assert "nested_test_map" in parent.data.metrics
    assert f"val_map {best.data.metrics['val_map']:.4f}" in printed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.kind=regression", "protocol.mode=paper"],
         "protocol.mode=paper: dataset synth is a regression task, which the original code never ran; use protocol.mode=honest"),
        (["classifier.epsilon=0.5"],
         "classifier.epsilon=0.5 has no meaning here (dataset synth is a multiclass task); leave it out"),
        (["dataset.kind=multilabel", "weights=trained"],
         "weights=trained: dataset synth is a multilabel task; training has a single-label head: use weights=random"),
    ],
)  # fmt: skip
def test_a_setting_that_does_not_fit_the_kind_is_refused_before_any_audio_is_read(tmp_path, overrides, message):
    cfg = compose([f"cache.dir={tmp_path}", "dataset.clips_per_class=3", "dataset.n_folds=3", "dataset.duration=1.0", *overrides])
    with pytest.raises(ConfigError) as err:
        make_plan(load(cfg))
    assert str(err.value) == message
    assert not (tmp_path / "digests").exists()  # no clip was read (hashed), no feature extracted


def test_the_report_compares_front_ends_on_map_with_chance_and_per_tag_figures(multilabel, tmp_path):
    """Two front-ends on the tagging variant, reported as a user does: the table on mAP (with
    ROC-AUC beside), the constant scorer's mAP as chance, per-tag AP instead of a confusion matrix."""
    from elm_audio.report.build import build

    cwd, _, client, first = multilabel
    run_here(cwd, "dataset.kind=multilabel", "classifier=linear", *QUICK, "frontend=timbral")
    _, runs = logged_runs(cwd)
    report = build(client.tracking_uri, "synth", first.info.experiment_id, tmp_path / "reports")
    assert set(report.summary["frontend"]) == {"mfcc", "timbral"} and set(report.summary["metric"]) == {"map"}
    md = (tmp_path / "reports" / "synth" / "table.md").read_text()
    assert "mAP" in md and "ROC-AUC" in md and "accuracy" not in md.split("## ")[1]
    chance = np.mean([r.data.metrics["test_chance_map"] for r in runs])
    assert f"{100 * chance:.1f}" in md  # chance: the mAP of scoring every tag by its prevalence
    written = {p.name for p in (tmp_path / "reports" / "synth").glob("*.png")}
    assert "tags_small.png" in written and not any(n.startswith("classes_") for n in written)


def test_the_paper_protocol_is_refused_on_a_hear_task_whatever_it_is_named(tmp_path):
    """A HEAR task's folds are its authors': only the honest protocol applies, also when the
    task is given its own name (as it should be, for an experiment of its own)."""
    from helpers.layouts import make_hear_task

    make_hear_task(tmp_path / "task")
    cfg = compose([f"cache.dir={tmp_path}", "dataset=hear", f"dataset.root={tmp_path / 'task'}", "dataset.name=esc50",
                   "protocol.mode=paper"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"^protocol.mode=paper: dataset esc50's own folds are the protocol, which the original"):
        make_plan(load(cfg))
