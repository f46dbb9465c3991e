"""The report on multilabel and regression runs (issue 32): runs written through MLflow's client
to the runner's contract (tag ``kind``; ``val_<p>``, ``test_<p>``, ``fold<k>_test_<p>``; a real
predictions.csv whose metrics are computed here with scikit-learn from the same arrays), then the
report in this process. Checked: tables on the kind's primary metric, kinds never mixed, chance,
intervals within the metric's range, the paired bootstrap on fixed partitions, the figures that
fit the kind, MagnaTagATune's published context and out-of-range metrics left out with the reason."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.reports import cells, logged_run, report, section, store
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from sklearn.metrics import (
    average_precision_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from elm_audio.report import kinds, stats
from elm_audio.report.collect import ClipScores
from elm_audio.run.record import metric_label

pytestmark = pytest.mark.xdist_group("report_kinds")  # one worker builds the stores once

TAGS = ["guitar", "female vocal", "drums", "piano", "rare/tag", "beat"]
PREVALENCE = [0.35, 0.25, 0.3, 0.2, 0.04, 0.3]  # rare/tag: some folds have no positive
FOLDS = 5
PER_FOLD = 40


def log(client: MlflowClient, experiment: str, frontend: str, kind: str, metrics: dict, predictions: pd.DataFrame | None,
        seed: int = 1, tags: dict | None = None, extra: dict[str, pd.DataFrame] | None = None) -> str:  # fmt: skip
    """A finished run as the runner logs one of ``kind``: its tags, params, metrics and
    predictions.csv (and any ``extra`` CSV artifact)."""
    tags = {"elm_audio.role": "run", "frontend": frontend, "feature_size": "small", "classifier": "linear", "kind": kind,
            "protocol.mode": "honest", "experiment": "default", **(tags or {})}  # fmt: skip
    params = {"seed": seed, "n_clips": FOLDS * PER_FOLD, "frontend.net._target_": "elm_audio.frontends.musical.Musical"}
    metrics = {"gflops_per_clip": 0.6, "extract_seconds": 3.0, **metrics}
    run_id = client.create_run(experiment, tags=tags).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(run_id, [Metric(k, float(v), now, 0) for k, v in metrics.items()], [Param(k, str(v)) for k, v in params.items()])
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in {"predictions.csv": predictions, **(extra or {})}.items():
            if frame is not None:
                frame.to_csv(Path(tmp) / name, index=False)
                client.log_artifact(run_id, str(Path(tmp) / name))
    client.set_terminated(run_id)
    return run_id


def tag_truth(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.random((n, len(TAGS))) < np.array(PREVALENCE)).astype(int)


def multilabel_run(truth: np.ndarray, splits: list[str], quality: float, rng: np.random.Generator) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Scores for ``truth`` (clips x tags) at ``quality`` (the positives' shift), and the metrics
    the runner logs from them, computed by scikit-learn per split: mAP and ROC-AUC over the tags
    with a positive clip (the others left out and counted), the chance mAP (the mean prevalence
    of the kept tags), per-tag AP (the mean over the splits where the tag has a positive)."""
    scores = quality * truth + rng.normal(0, 1, truth.shape)
    names = sorted(set(splits))
    partition = names == ["partition"]
    metrics, per_tag, chance = {}, {t: [] for t in TAGS}, []
    maps, rocs = [], []
    for k, name in enumerate(names, start=1):
        rows = np.array(splits) == name
        y, s = truth[rows], scores[rows]
        kept = y.sum(axis=0) > 0
        ap = average_precision_score(y[:, kept], s[:, kept], average=None)
        maps.append(ap.mean())
        rocs.append(roc_auc_score(y[:, kept], s[:, kept], average="macro"))
        chance.append(y[:, kept].mean(axis=0).mean())
        for t, v in zip(np.array(TAGS)[kept], ap):
            per_tag[t].append(v)
        if not partition:
            metrics.update({f"fold{k}_test_map": maps[-1], f"fold{k}_val_map": maps[-1] - 0.01,
                            f"fold{k}_test_roc_auc": rocs[-1], f"fold{k}_tags_left_out": int((~kept).sum())})  # fmt: skip
        else:
            metrics["fold1_tags_left_out"] = int((~kept).sum())
    metrics.update({"test_map": np.mean(maps), "test_map_std": np.std(maps), "val_map": np.mean(maps) - 0.01,
                    "test_roc_auc": np.mean(rocs), "test_chance_map": np.mean(chance), "n_test_clips": len(truth),
                    "knn_map": np.mean(maps) - 0.05})  # fmt: skip
    if not partition:
        metrics.update({f"fold{k}_knn_map": v - 0.05 for k, v in enumerate(maps, start=1)})
    metrics.update({f"tag_ap/{metric_label(t)}": np.mean(v) for t, v in per_tag.items() if v})
    table = pd.DataFrame({"clip_id": [f"clip{i:04d}" for i in range(len(truth))], "split": splits})
    for j, t in enumerate(TAGS):
        table[f"true:{t}"] = truth[:, j]
    for j, t in enumerate(TAGS):
        table[f"score:{t}"] = scores[:, j]
    tag_ap = pd.DataFrame({"tag": [t for t in TAGS if per_tag[t]], "metric": [f"tag_ap/{metric_label(t)}" for t in TAGS if per_tag[t]],
                           "ap": [np.mean(per_tag[t]) for t in TAGS if per_tag[t]],
                           "n_positive": [int(truth[:, TAGS.index(t)].sum()) for t in TAGS if per_tag[t]]})  # fmt: skip
    return metrics, table, tag_ap


def regression_run(target: np.ndarray, splits: list[str], noise: list[float], rng: np.random.Generator) -> tuple[dict, pd.DataFrame]:
    """Predictions of ``target`` with noise ``noise[k]`` in fold k, and R² and MAE per fold by
    scikit-learn."""
    names = sorted(set(splits))
    predicted = target.astype(float).copy()
    metrics, r2s, maes = {}, [], []
    for k, name in enumerate(names, start=1):
        rows = np.array(splits) == name
        predicted[rows] = target[rows] + rng.normal(0, noise[k - 1], rows.sum())
        r2s.append(r2_score(target[rows], predicted[rows]))
        maes.append(mean_absolute_error(target[rows], predicted[rows]))
        metrics.update({f"fold{k}_test_r2": r2s[-1], f"fold{k}_val_r2": r2s[-1], f"fold{k}_test_mae": maes[-1]})
    metrics.update({"test_r2": np.mean(r2s), "test_r2_std": np.std(r2s), "val_r2": np.mean(r2s), "test_mae": np.mean(maes),
                    "n_test_clips": len(target), "knn_r2": np.mean(r2s) - 0.1})  # fmt: skip
    metrics.update({f"fold{k}_knn_r2": v - 0.1 for k, v in enumerate(r2s, start=1)})
    table = pd.DataFrame({"clip_id": [f"clip{i:04d}" for i in range(len(target))], "split": splits, "target": target, "prediction": predicted})
    return metrics, table


FOLD_SPLITS = [f"fold{k}" for k in range(1, FOLDS + 1) for _ in range(PER_FOLD)]
ML_QUALITY = {"vgg": 2.5, "temporal": 1.2, "cnn_7x96": 0.6}
TRAINED = {"vgg": 3.0, "temporal": 2.0, "cnn_7x96": 1.5}
REG_NOISE = {"vgg": [0.05, 0.3, 0.05, 0.3, 0.05], "temporal": [0.6] * 5, "cnn_7x96": [1.2] * 5}  # vgg: R² near 1, spread


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """One experiment holding every kind: two multiclass runs, three front-ends' multilabel runs
    (and their trained runs: the premise), three front-ends' regression runs, and forged runs
    whose metrics leave their range. Returns (cwd, printed, forged run id -> reason)."""
    cwd = tmp_path_factory.mktemp("kinds")
    client, experiment = store(cwd)
    rng = np.random.default_rng(0)
    for fe in ("temporal", "mfcc"):
        logged_run(client, experiment, fe)  # multiclass, without a kind tag (as before the kinds)
    truth = tag_truth(rng, FOLDS * PER_FOLD)
    for fe, q in ML_QUALITY.items():
        metrics, table, tag_ap = multilabel_run(truth, FOLD_SPLITS, q, rng)
        log(client, experiment, fe, "multilabel", metrics, table, extra={"tag_ap.csv": tag_ap})
        trained, table, _ = multilabel_run(truth, FOLD_SPLITS, TRAINED[fe], rng)
        log(client, experiment, fe, "multilabel", trained, None, tags={"classifier": "trained"})
    target = rng.normal(5.0, 2.0, FOLDS * PER_FOLD)
    for fe, noise in REG_NOISE.items():
        metrics, table = regression_run(target, FOLD_SPLITS, [2.0 * n for n in noise], rng)
        log(client, experiment, fe, "regression", metrics, table)
    bad_ml, _, _ = multilabel_run(truth, FOLD_SPLITS, 1.0, rng)
    bad_reg, _ = regression_run(target, FOLD_SPLITS, [1.0] * 5, rng)
    very_negative, table = regression_run(target, FOLD_SPLITS, [8.0] * 5, rng)  # R² far below 0: a result, not an error
    assert very_negative["test_r2"] < -2
    log(client, experiment, "timbral", "regression", very_negative, table)
    forged = {
        log(client, experiment, "timbral", "multilabel", {**bad_ml, "test_map": 1.5}, None): "metric test_map lies outside [0, 1], the range of an average precision",
        log(client, experiment, "timbral", "multilabel", {**bad_ml, "fold2_test_roc_auc": -0.2}, None): "metric fold2_test_roc_auc lies outside [0, 1]",
        log(client, experiment, "sample_level", "regression", {**bad_reg, "test_r2": 2.0}, None): "metric test_r2 is above 1, and an R² never is",
        log(client, experiment, "sample_level", "regression", {**bad_reg, "test_mae": -1.0}, None, seed=2): "metric test_mae is below 0",
        log(client, experiment, "sample_level", "cooking", bad_reg, None, seed=3): "tag kind='cooking' is not a task kind",
    }
    code, printed = report(cwd)
    assert code == 0, printed
    return cwd, printed, forged


MTAT_QUALITY = {"vgg": 3.0, "timbral_temporal": 1.0, "sample_level": 1.0}


@pytest.fixture(scope="module")
def mtat(tmp_path_factory):
    """MagnaTagATune on its fixed partitions: vgg clearly better (two seeds), timbral_temporal
    and sample_level with the very same scores (two equal runs)."""
    cwd = tmp_path_factory.mktemp("mtat")
    client, experiment = store(cwd, "mtat")
    rng = np.random.default_rng(1)
    truth = tag_truth(rng, 300)
    splits = ["partition"] * len(truth)
    same = None
    for fe, q in MTAT_QUALITY.items():
        for seed in (1, 2) if fe == "vgg" else (1,):
            if fe == "sample_level":
                metrics, table, tag_ap = same
            else:
                metrics, table, tag_ap = multilabel_run(truth, splits, q, np.random.default_rng(seed + (fe == "vgg")))
                same = (metrics, table, tag_ap) if fe == "timbral_temporal" else same
            log(client, experiment, fe, "multilabel", metrics, table, seed, tags={"dataset": "mtat"}, extra={"tag_ap.csv": tag_ap})
    code, printed = report(cwd)
    assert code == 0, printed
    return cwd, printed, truth


def test_every_kind_is_reported_apart_on_its_primary_metric(synth):
    cwd, printed, _ = synth
    folders = {"multiclass": cwd / "reports" / "synth", "multilabel": cwd / "reports" / "synth" / "multilabel",
               "regression": cwd / "reports" / "synth" / "regression"}  # fmt: skip
    tables = {k: pd.read_csv(f / "table.csv") for k, f in folders.items()}
    assert set(tables["multiclass"]["frontend"]) == {"temporal", "mfcc"} and "kind" not in tables["multiclass"]  # as before
    assert set(tables["multilabel"]["kind"]) == {"multilabel"} and set(tables["multilabel"]["metric"]) == {"map"}
    assert set(tables["regression"]["kind"]) == {"regression"} and set(tables["regression"]["metric"]) == {"r2"}
    assert set(tables["regression"]["frontend"]) == {"vgg", "temporal", "cnn_7x96", "timbral"}
    # the cells are the runs' own test_<p> (one seed, the mean over folds)
    ml = tables["multilabel"].set_index(["frontend", "classifier"])
    md = (folders["multilabel"] / "table.md").read_text()
    assert md.startswith("# synth: front-ends compared on mAP (multilabel)")
    assert "Cells: mean test mAP (%)" in md and "small · linear · ROC-AUC" in md and "accuracy" not in md.split("## Notes")[0]
    reg_md = (folders["regression"] / "table.md").read_text()
    assert "Cells: mean test R² [95% interval]" in reg_md and "small · linear · MAE" in reg_md
    assert ml.loc[("vgg", "linear"), "mean"] == ml.xs("linear", level="classifier")["mean"].max()
    for kind in ("multilabel", "regression"):
        assert f"synth ({kind}):" in printed and "also holds" in (folders[kind] / "table.md").read_text()
    mc = (folders["multiclass"] / "table.md").read_text()
    assert "# synth: front-ends compared\n" in mc and "mAP" not in mc.split("## Notes")[0]
    # each kind's MLflow report run holds its own files only
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("elm_audio/synth")
    reports = {r.data.tags["kind"]: r for r in client.search_runs([exp.experiment_id], "tags.`elm_audio.role` = 'report'")}
    assert set(reports) == {"multiclass", "multilabel", "regression"}
    assert {a.path for a in client.list_artifacts(reports["multiclass"].info.run_id)} >= {"table.md", "table.csv"}
    assert not any(a.is_dir for a in client.list_artifacts(reports["multiclass"].info.run_id))


def test_the_cells_are_the_logged_metrics_and_the_pairs_the_corrected_t_test_on_them(synth):
    cwd, _, _ = synth
    folder = cwd / "reports" / "synth" / "multilabel"
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("elm_audio/synth")
    runs = {r.data.tags["frontend"]: r for r in client.search_runs([exp.experiment_id], "tags.kind = 'multilabel' and tags.classifier = 'linear'")}
    table = pd.read_csv(folder / "table.csv").set_index(["frontend", "classifier"])
    for fe in ML_QUALITY:
        folds = [runs[fe].data.metrics[f"fold{k}_test_map"] for k in range(1, FOLDS + 1)]
        assert table.loc[(fe, "linear"), "mean"] == pytest.approx(np.mean(folds))
        assert table.loc[(fe, "linear"), "secondary_mean"] == pytest.approx(runs[fe].data.metrics["test_roc_auc"])
    pairs = pd.read_csv(folder / "pairs_small_linear.csv")
    assert set(pairs["test"]) == {"corrected resampled t"} and len(pairs) == 3
    row = pairs[(pairs["a"] == "cnn_7x96") & (pairs["b"] == "vgg")].iloc[0]
    d = np.array([runs["cnn_7x96"].data.metrics[f"fold{k}_test_map"] - runs["vgg"].data.metrics[f"fold{k}_test_map"] for k in range(1, 6)])
    assert row["mean_diff"] == pytest.approx(d.mean()) and row["p"] < 0.05
    md = (folder / "table.md").read_text()
    assert "small · linear: vgg is best with mAP " in md and " points [" in md


def test_chance_is_the_constant_scorers_map_roc_auc_half_and_r2_zero(synth):
    cwd, _, _ = synth
    folder = cwd / "reports" / "synth"
    table = pd.read_csv(folder / "multilabel" / "table.csv")
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("elm_audio/synth")
    chosen = client.search_runs([exp.experiment_id], "tags.kind = 'multilabel' and tags.`elm_audio.role` = 'run'")
    chance = np.mean([r.data.metrics["test_chance_map"] for r in chosen if r.data.metrics["test_map"] <= 1])
    md = (folder / "multilabel" / "table.md").read_text()
    assert f"has an mAP of {100 * chance:.1f}% here" in md and "a ROC-AUC of 50" in md
    assert table["chance"].mean() == pytest.approx(chance)
    # tags left out of a split's macro average (rare/tag has folds with no positive) are said so
    assert "left tags with no positive test clip out of a split's macro average" in md
    assert "Chance: R² 0 is what predicting the mean target scores" in (folder / "regression" / "table.md").read_text()


def test_intervals_stay_inside_the_metrics_range(synth, mtat):
    cwd, _, _ = synth
    ml = pd.read_csv(cwd / "reports" / "synth" / "multilabel" / "table.csv")
    reg = pd.read_csv(cwd / "reports" / "synth" / "regression" / "table.csv")
    assert ml[["ci_low", "ci_high"]].notna().all().all()
    assert (ml["ci_low"] >= 0).all() and (ml["ci_high"] <= 1).all()
    assert (reg["ci_high"] <= 1).all()
    vgg = reg.set_index("frontend").loc["vgg"]
    assert vgg["ci_high"] == 1.0  # its t-interval reaches past 1: clipped, and the method says so
    assert "clipped at 1 (an R² cannot exceed it" in (cwd / "reports" / "synth" / "regression" / "table.md").read_text()
    assert reg.set_index("frontend").loc["timbral", "mean"] < -2  # a very negative R² is a result
    parts = pd.read_csv(mtat[0] / "reports" / "mtat" / "table.csv")
    assert parts[["ci_low", "ci_high"]].notna().all().all()  # fixed partitions: the clip bootstrap's interval
    assert ((parts["ci_low"] >= 0) & (parts["ci_low"] <= parts["mean"]) & (parts["mean"] <= parts["ci_high"]) & (parts["ci_high"] <= 1)).all()


def test_on_fixed_partitions_the_pairs_are_a_paired_bootstrap_over_clips(mtat):
    cwd, printed, truth = mtat
    pairs = pd.read_csv(cwd / "reports" / "mtat" / "pairs_small_linear.csv")
    assert set(pairs["test"]) == {"paired bootstrap"} and set(pairs["n"]) == {len(truth)}
    by = {frozenset((r["a"], r["b"])): r for _, r in pairs.iterrows()}
    better = by[frozenset(("vgg", "sample_level"))]
    equal = by[frozenset(("timbral_temporal", "sample_level"))]
    assert better["p"] <= 2 / (stats.CLIP_BOOTSTRAP + 1) and better["p_holm"] < 0.05
    assert equal["p"] == 1.0 and equal["mean_diff"] == 0
    table = pd.read_csv(cwd / "reports" / "mtat" / "table.csv").set_index("frontend")
    sign = 1 if better["a"] == "vgg" else -1
    assert sign * better["mean_diff"] == pytest.approx(table.loc["vgg", "mean"] - table.loc["sample_level", "mean"])
    md = (cwd / "reports" / "mtat" / "table.md").read_text()
    assert f"paired bootstrap over the test clips (Efron & Tibshirani 1993): {stats.CLIP_BOOTSTRAP} resamples" in md
    assert "paired bootstrap over the test clips (1000 resamples)" in printed


def test_the_bootstrap_recomputes_the_metrics_scikit_learn_computes():
    rng = np.random.default_rng(4)
    truth = tag_truth(rng, 120)
    scores = np.round(truth + rng.normal(0, 1, truth.shape), 1)  # ties
    w = stats.clip_draws(len(truth), 20)
    got = stats.weighted_map(truth.astype(float), scores, w)
    for row in (0, 1, 7):
        rows = np.repeat(np.arange(len(truth)), w[row].astype(int))
        kept = truth[rows].sum(axis=0) > 0
        assert got[row] == pytest.approx(average_precision_score(truth[rows][:, kept], scores[rows][:, kept], average=None).mean())
    y = rng.normal(0, 1, 120)
    yhat = y + rng.normal(0, 0.5, 120)
    r2 = stats.weighted_r2(y, yhat, w)
    rows = np.repeat(np.arange(120), w[3].astype(int))
    assert r2[0] == pytest.approx(r2_score(y, yhat)) and r2[3] == pytest.approx(r2_score(y[rows], yhat[rows]))
    # regression: a clearly better run against a worse, and two runs of equal quality
    clips = pd.Index([f"c{i}" for i in range(120)])
    run = lambda noise, seed: ClipScores(f"run{seed}", clips, y, y + np.random.default_rng(seed).normal(0, noise, 120))
    assert stats.clip_bootstrap([run(0.3, 1)], [run(1.0, 2)], "r2")["p"] < 0.01
    assert stats.clip_bootstrap([run(0.5, 3)], [run(0.5, 4)], "r2")["p"] > 0.2
    low, high = stats.clip_interval([ClipScores("", clips, y, y + rng.normal(0, 0.01, 120))], "r2")
    assert low <= high <= 1


def test_the_figures_fit_the_kind(synth, mtat):
    cwd, _, _ = synth
    ml, reg = cwd / "reports" / "synth" / "multilabel", cwd / "reports" / "synth" / "regression"
    for path in (ml / "tags_small.png", ml / "bars_small.png", ml / "cost.png", ml / "significance_small_linear.png",
                 reg / "scatter_small.png", reg / "bars_small.png", mtat[0] / "reports" / "mtat" / "tags_small.png"):  # fmt: skip
        assert path.read_bytes()[:4] == b"\x89PNG", path
    assert not list(ml.glob("classes_*")) and not list(reg.glob("tags_*"))
    tags = pd.read_csv(ml / "tags_small.csv", index_col=0)
    assert set(tags.index) == {metric_label(t) for t in TAGS} and tags.columns[0] == "vgg · trained"
    assert "## Per tag: average precision" in (ml / "table.md").read_text()
    assert "## Predicted against true" in (reg / "table.md").read_text()


def test_the_figure_functions_draw_the_kinds_chance_and_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from elm_audio.report import figures

    summary = pd.DataFrame([{"frontend": fe, "feature_size": "small", "classifier": "mlp", "experiment": "default", "mean": m,
                             "ci_low": m - 0.3, "ci_high": m + 0.3, "input": "spectrogram", "gflops_per_clip": 1.0,
                             "metric": "r2"} for fe, m in (("vgg", 0.8), ("temporal", -0.6))])  # fmt: skip
    fig = figures.bars(summary, "small", "synth", kinds.chance("regression"))
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test R²" and ax.get_ylim()[1] == 1.0 and ax.get_ylim()[0] < -0.6
    (line,) = [line for line in ax.lines if line.get_label().startswith("chance")]
    assert np.allclose(line.get_ydata(), 0)
    chance = kinds.chance("multilabel", chance_map=0.123)
    fig = figures.cost(summary.assign(metric="map", mean=[0.4, 0.3], ci_low=0.2, ci_high=0.5), "synth", chance)
    FigureCanvasAgg(fig).draw()
    (line,) = [line for line in fig.axes[0].lines if line.get_label().startswith("chance")]
    assert np.allclose(line.get_ydata(), 12.3) and fig.axes[0].get_ylabel() == "test mAP (%)"
    assert figures.classifier_colour("linear") != figures.classifier_colour("mlp")
    assert len({figures.classifier_colour(c) for c in ("svm", "elm", "trained", "knn", "linear", "mlp")}) == 6


def test_magnatagatune_shows_the_trained_models_published_figures(mtat):
    cwd, _, _ = mtat
    md = (cwd / "reports" / "mtat" / "table.md").read_text()
    context = section(md, "Trained models, published (context)")
    rows = {r[0]: r[1:3] for r in map(cells, context.splitlines()) if r}
    assert rows["spectrogram model (musically motivated: timbral and temporal filters)"] == ["90.40", "38.11"]
    assert rows["VGG (reproduced)"] == ["89.99", "37.56"] and rows["SampleCNN (reproduced)"] == ["88.56", "34.38"]
    assert "Tables 5.2 and 5.3" in context
    assert "89.99 / 37.56 (VGG (reproduced))" in md  # beside vgg in the comparison
    assert "published (Pons & Serra 2019)" not in md


def test_the_premise_ranks_random_against_trained_on_map(synth):
    cwd, _, _ = synth
    folder = cwd / "reports" / "synth" / "multilabel"
    premise = pd.read_csv(folder / "premise_small.csv", index_col=0)
    assert set(premise.index) == set(ML_QUALITY)
    assert premise["random"].idxmax() == "vgg" and premise["trained"].idxmax() == "vgg"
    md = (folder / "table.md").read_text()
    assert "3 front-ends with both random and trained runs; Kendall's tau +1.00" in section(md, "Premise: does the random-weight ranking predict the trained one?")
    assert "what predicts trained mAP?" in md and "random-weight mAP" in md


def test_metrics_outside_their_range_leave_their_run_out_with_the_reason(synth):
    cwd, printed, forged = synth
    ml = (cwd / "reports" / "synth" / "multilabel" / "table.md").read_text()
    reg = (cwd / "reports" / "synth" / "regression" / "table.md").read_text()
    mc = (cwd / "reports" / "synth" / "table.md").read_text()
    for run_id, why in forged.items():
        (line,) = [line for line in printed.splitlines() if run_id in line]
        assert why in line, line
    left = {**dict.fromkeys(pd.read_csv(cwd / "reports" / "synth" / "multilabel" / "left_out.csv")["run_id"], "multilabel"),
            **dict.fromkeys(pd.read_csv(cwd / "reports" / "synth" / "regression" / "left_out.csv")["run_id"], "regression"),
            **dict.fromkeys(pd.read_csv(cwd / "reports" / "synth" / "left_out.csv")["run_id"], "multiclass")}  # fmt: skip
    assert set(left) == set(forged)
    for run_id in forged:
        assert run_id in {"multilabel": ml, "regression": reg, "multiclass": mc}[left[run_id]]
    assert "150.0" not in ml  # test_map 1.5 shown nowhere
