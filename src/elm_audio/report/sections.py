"""The report's sections beyond one accuracy per front-end: what the front-ends compute (CKA),
which classes they win, the kNN probe, and what else predicts trained accuracy."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..tracking import DEFAULT_EXPERIMENT
from . import classes, markdown, similarity
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
    save_figure: Callable[[Figure, str], None], files: list[Path],
) -> Beyond:  # fmt: skip
    """Features come from ``cache_dir`` (default: as runs use, $ELM_AUDIO_CACHE or
    .elm_audio_cache) or MLflow."""
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
    for (size, exp), part in summary.groupby(["feature_size", "experiment"]):
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
        mine = predictor_notes(table, p.feature_size)
        predictor_lines += mine
        predictor_md += [""] * bool(predictor_md) + markdown.bullets(mine) + ["", markdown.table(table.round(3), index=False)]
    out = Beyond([], similar_notes + probe_notes + class_notes + predictor_lines, [], [], knn)
    for title, lines, method, why_not in [
        ("Do the front-ends compute the same thing? (debiased linear CKA)", markdown.bullets(similar_notes), CKA_METHOD,
         "CKA: no two front-ends' features could be found at one size (feature cache or MLflow)."),
        ("The kNN probe: the ranking without a trained classifier", markdown.bullets(probe_notes), KNN_METHOD,
         "kNN probe: fewer than three front-ends with kNN probes at one size."),
        ("Per class", (markdown.bullets(class_notes) or [NO_CLASS_TEST]) + class_md
         if class_md else [], CLASS_METHOD, "Per class: no run logged its recall per class (class_accuracy)."),
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
