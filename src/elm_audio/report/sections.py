"""The report's sections beyond one score per front-end: what the front-ends compute (CKA),
which classes they win (multiclass), each tag's average precision (multilabel), predictions
against targets (regression), the kNN probe, and what else predicts the trained score."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..stores.tracking import DEFAULT_EXPERIMENT, TRAINED_SCORER
from . import classes, figures, kinds, markdown, similarity
from .collect import run_clip_scores
from .premise import premises
from .probes import knn_agreement, knn_summary, predictor_notes, predictors


def suffix(size: str, experiment: str) -> str:
    return size + ("" if experiment == DEFAULT_EXPERIMENT else f"_{experiment}")


def with_knn(shown: pd.DataFrame, knn: pd.DataFrame, cell_text: Callable[[pd.Series], str]) -> pd.DataFrame:
    """The table with a column per feature size for the kNN probe (default preset)."""
    if knn.empty:
        return shown
    out = shown.copy()
    for size, part in knn[knn["experiment"] == DEFAULT_EXPERIMENT].groupby("feature_size", sort=False):
        cells = {r["frontend"]: cell_text(r) for _, r in part.iterrows()}
        out[f"{size} · kNN probe"] = [cells.get(fe, "—") for fe in out["front-end"]]
    return out


CKA_METHOD = (
    "CKA: debiased linear CKA (Kornblith et al. 2019, ICML; with the unbiased HSIC of Song et al. 2012, JMLR 13, so "
    "that unrelated features score about 0) between the standardized features of two front-ends on the same clips; "
    "its intervals are percentile bootstraps over the clips."
)
KNN_METHOD = (
    "kNN probe: k nearest neighbours by cosine on the features standardized on the training clips, under the same "
    "protocol and folds as the classifiers, summarized as their cells are; Kendall's tau compares its ranking with "
    "each classifier's."
)
CLASS_METHOD = (
    "Per class: a cell's recall on each class's test clips, the mean over its seeds; the two best front-ends, where "
    "both have predictions, compared on each class's clips by the exact McNemar test (a clip counts as right when most "
    "seeds get it right), Holm-corrected over the classes."
)
NO_CLASS_TEST = "No class-by-class test: it needs two front-ends with predictions (predictions.csv) on the same clips."
TAG_METHOD = (
    "Per tag: each tag's average precision, as the runs log it (tag_ap/<tag>: the mean over the folds whose test "
    "clips have a positive), the mean over a cell's seeds; the figure sets the best random-weight cell beside the best "
    "cell of the next front-end, with each tag's chance (a constant scorer's AP: the share of positive test clips)."
)
SCATTER_METHOD = (
    "Predicted against true: for each front-end, the run of its best cell with the best validation score, every "
    "test clip of its predictions.csv (over all folds); R² there is the one of those clips pooled, which the "
    "table's mean over folds need not match."
)
BASELINES_METHOD = (
    "Premise baselines: each predictor's ranking of the front-ends against the trained one by Kendall's tau, with "
    "the premise's bootstrap interval over folds and exact one-sided p."
)


@dataclass
class Beyond:
    """The sections beyond accuracy: table.md's lines for those with something to show, the
    notes the terminal prints, a line for each section with nothing to show (why), the method
    of each shown section in a sentence or two, and the kNN probe's cells (the table's column)."""

    lines: list[str]
    notes: list[str]
    absent: list[str]
    method: list[str]
    knn: pd.DataFrame


def beyond_accuracy(
    uri: str, dataset: str, best: pd.DataFrame, summary: pd.DataFrame, folder: Path, cache_dir: Path | None,
    save_figure: Callable[[Figure, str], None], files: list[Path], task_kind: str = kinds.MULTICLASS,
) -> Beyond:  # fmt: skip
    """Features come from ``cache_dir`` (default: as runs use, $ELM_AUDIO_CACHE or
    .elm_audio_cache) or MLflow. ``task_kind`` chooses what stands for the classes: per class
    (multiclass), per tag (multilabel), predicted against true (regression)."""
    cache_dir = cache_dir or Path(os.environ.get("ELM_AUDIO_CACHE", ".elm_audio_cache"))
    knn = knn_summary(best)
    probe_notes = knn_agreement(summary, knn) if not knn.empty else []
    similar_notes = []
    for s in similarity.similarities(uri, best, cache_dir):
        name = suffix(s.feature_size, s.experiment)
        save_figure(similarity.figure(s, f"{dataset}: {s.feature_size}"), f"cka_{name}.png")
        for kind, frame in (("cka", s.matrix), ("cka_pairs", s.pairs)):
            frame.to_csv(folder / f"{kind}_{name}.csv", index=kind == "cka")
            files.append(folder / f"{kind}_{name}.csv")
        similar_notes += similarity.notes(s)
    class_notes, class_md = [], []
    for (size, exp), part in summary.groupby(["feature_size", "experiment"]) if task_kind == kinds.MULTICLASS else []:
        mine = best[(best["feature_size"] == size) & (best["experiment"] == exp)]
        name = suffix(size, exp)
        table = classes.class_table(mine, part)
        if table.empty:
            continue
        table.to_csv(folder / f"classes_{name}.csv")
        files.append(folder / f"classes_{name}.csv")
        class_md += ["", f"Recall per class (%), feature size {size}" + ("" if exp == DEFAULT_EXPERIMENT else f", experiment={exp}"),
                     "", markdown.table((100 * table).round(1))]  # fmt: skip
        d = classes.two_best(uri, mine, part)
        if d is not None:
            save_figure(classes.figure(d, f"{dataset}: {size}, class by class"), f"classes_{name}.png")
            d.table.to_csv(folder / f"class_differences_{name}.csv")
            files.append(folder / f"class_differences_{name}.csv")
            class_notes += classes.notes(d, size)
    predictor_lines, predictor_md = [], []
    for p in premises(best):
        table = predictors(best, p)
        name = suffix(p.feature_size, p.experiment)
        table.to_csv(folder / f"predictors_{name}.csv", index=False)
        files.append(folder / f"predictors_{name}.csv")
        mine = predictor_notes(table, p.feature_size, kinds.BY_NAME.get(p.metric, kinds.ACCURACY))
        predictor_lines += mine
        predictor_md += [""] * bool(predictor_md) + markdown.bullets(mine) + ["", markdown.table(table.round(3), index=False)]
    per_kind = []  # what stands for the per-class section: (title, lines, method, why not)
    if task_kind == kinds.MULTICLASS:
        per_kind.append(("Per class", (markdown.bullets(class_notes) or [NO_CLASS_TEST]) + class_md if class_md else [],
                         CLASS_METHOD, "Per class: no run logged its recall per class (class_accuracy)."))  # fmt: skip
    elif task_kind == kinds.MULTILABEL:
        tag_md = per_tag(uri, dataset, best, summary, folder, save_figure, files)
        per_kind.append(("Per tag: average precision", tag_md, TAG_METHOD, "Per tag: no run logged its average precision per tag (tag_ap/<tag>)."))
    elif task_kind == kinds.REGRESSION:
        scatter_md = scatter(uri, dataset, best, summary, save_figure)
        per_kind.append(("Predicted against true", scatter_md, SCATTER_METHOD,
                         "Predicted against true: no chosen run has a predictions.csv with target and prediction."))  # fmt: skip
    out = Beyond([], similar_notes + probe_notes + class_notes + predictor_lines, [], [], knn)
    for title, lines, method, why_not in [
        ("Do the front-ends compute the same thing? (debiased linear CKA)", markdown.bullets(similar_notes), CKA_METHOD,
         "CKA: no two front-ends' features could be found at one size (feature cache or MLflow)."),
        ("The kNN probe: the ranking without a trained classifier", markdown.bullets(probe_notes), KNN_METHOD,
         "kNN probe: fewer than three front-ends with kNN probes at one size."),
        *per_kind,
    ]:  # fmt: skip
        if lines:
            out.lines += markdown.section(title, lines)
            out.method.append(method)
        else:
            out.absent.append(why_not)
    if predictor_md:  # none without a premise, whose own line in table.md says why
        out.lines += markdown.section("Premise baselines: parameters, GFLOP, zero-cost proxies", predictor_md)
        out.method.append(BASELINES_METHOD)
    return out


def tag_table(best: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Tags x cells (front-end · classifier, best first): each tag's test average precision
    (tag_ap/<tag>), the mean over the cell's seeds."""
    columns = {}
    for _, cell in summary.sort_values("mean", ascending=False).iterrows():
        rows = best[(best["frontend"] == cell["frontend"]) & (best["classifier"] == cell["classifier"])]
        per_seed = pd.DataFrame(list(rows["tag_ap"])) if "tag_ap" in rows else pd.DataFrame()
        if not per_seed.empty:
            columns[classes.cell_name(cell["frontend"], cell["classifier"])] = per_seed.mean()
    return pd.DataFrame(columns).sort_index().rename_axis("tag")


def prevalence(uri: str, runs: pd.DataFrame) -> pd.Series | None:
    """Each tag's share of positive test clips, by its metric name (tag_ap/<name>), from the
    first of ``runs`` with a predictions.csv."""
    from ..run.record import metric_label  # the name tag_ap/<tag> gives a tag

    for scores in run_clip_scores(uri, runs.head(1), kinds.MULTILABEL):
        return pd.Series(scores.truth.mean(axis=0), index=[metric_label(t) for t in scores.tags])
    return None


def per_tag(uri: str, dataset: str, best: pd.DataFrame, summary: pd.DataFrame, folder: Path,
            save_figure: Callable[[Figure, str], None], files: list[Path]) -> list[str]:  # fmt: skip
    """Multilabel: per size and preset, tags_<name>.csv (tags x cells) and tags_<name>.png (the
    best cell's AP per tag, sorted, beside the next front-end's best cell); table.md's lines."""
    lines = []
    for (size, exp), part in summary.groupby(["feature_size", "experiment"]):
        mine = best[(best["feature_size"] == size) & (best["experiment"] == exp)]
        table = tag_table(mine, part)
        if table.empty:
            continue
        name = suffix(size, exp)
        table.to_csv(folder / f"tags_{name}.csv")
        files.append(folder / f"tags_{name}.csv")
        random = part[part["classifier"] != TRAINED_SCORER]  # the random-weight cells, where there are any
        ranked = (random if len(random) else part).sort_values("mean", ascending=False).drop_duplicates("frontend")
        shown = [c for c in (classes.cell_name(r["frontend"], r["classifier"]) for _, r in ranked.head(2).iterrows()) if c in table]
        shown = shown or [table.columns[0]]
        top = ranked.iloc[0]
        chance = prevalence(uri, mine[(mine["frontend"] == top["frontend"]) & (mine["classifier"] == top["classifier"])])
        where = f"feature size {size}" + ("" if exp == DEFAULT_EXPERIMENT else f", experiment={exp}")
        save_figure(figures.tag_ap(table[shown], f"{dataset}: {where}, average precision per tag", chance), f"tags_{name}.png")
        first = table[shown[0]].dropna()
        lines += markdown.bullets([
            f"{where}: {shown[0]} scores its best tag {first.idxmax()} at AP {100 * first.max():.1f}% and its worst, "
            f"{first.idxmin()}, at {100 * first.min():.1f}% ({len(first)} tags; tags_{name}.csv has every cell's)"
        ])  # fmt: skip
    return lines


def scatter(uri: str, dataset: str, best: pd.DataFrame, summary: pd.DataFrame, save_figure: Callable[[Figure, str], None]) -> list[str]:
    """Regression: per size and preset, scatter_<name>.png, each front-end's predictions against
    the targets (the run of its best cell with the best validation score); table.md's lines."""
    lines = []
    for (size, exp), part in summary.groupby(["feature_size", "experiment"]):
        mine = best[(best["feature_size"] == size) & (best["experiment"] == exp)]
        panels = []
        for fe in figures.ranked_order(part):
            cell = part[part["frontend"] == fe].sort_values("mean", ascending=False).iloc[0]
            runs = mine[(mine["frontend"] == fe) & (mine["classifier"] == cell["classifier"])]
            by = "val_score" if "val_score" in runs else "val_accuracy"
            found = run_clip_scores(uri, runs.sort_values(by, ascending=False).head(1), kinds.REGRESSION)
            if found:
                y, yhat = found[0].truth, found[0].scores
                total = np.sum((y - y.mean()) ** 2)
                r2 = 1 - np.sum((y - yhat) ** 2) / total if total > 0 else np.nan
                panels.append((classes.cell_name(fe, cell["classifier"]), y, yhat, r2))
        if not panels:
            continue
        name = suffix(size, exp)
        where = f"feature size {size}" + ("" if exp == DEFAULT_EXPERIMENT else f", experiment={exp}")
        save_figure(figures.predicted_against_true(panels, f"{dataset}: {where}, predicted against true"), f"scatter_{name}.png")
        lines += markdown.bullets([f"{where}: scatter_{name}.png, {len(panels)} front-end(s); pooled R² "
                                   + ", ".join(f"{n} {r2:.3f}" for n, _, _, r2 in panels)])  # fmt: skip
    return lines
