"""One dataset's report: table (Markdown and CSV), figures, significance, notes.

Runs of different task kinds (kinds.py) are never compared with each other: ``build_all``
writes one report per kind present in the experiment, each on its kind's primary metric
(accuracy, mAP, R²). Where an experiment holds one kind, its report goes to ``<out>/<dataset>/``
as always; where it holds several, the multiclass report stays there and each other kind's goes
to ``<out>/<dataset>/<kind>/`` (a folder no dataset's report can take), each with an MLflow
report run of its own (tag ``kind``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context

from ..config import native_frontends
from ..stores import tracking
from ..stores.tracking import DEFAULT_EXPERIMENT
from . import figures, kinds, markdown, sections
from .collect import clip_correctness, load_runs, run_clip_scores
from .kinds import ACCURACY, Metric
from .premise import MIN_FRONTENDS, premises
from .premise import figure as premise_figure
from .published import (
    TAGGING_FRONTENDS,
    TAGGING_SOURCE,
    TRAINED,
    TRAINED_TAGGING,
    is_papers,
    is_tagging,
    published,
    published_tagging,
)
from .stats import (
    ALPHA,
    CLIP_BOOTSTRAP,
    LEVEL,
    clip_interval,
    left_out,
    metric_of,
    pairwise,
    select_best,
    summarize,
)

SIZES = ("small", "large")


@dataclass
class Report:
    dataset: str
    summary: pd.DataFrame
    pairs: dict[tuple[str, str], pd.DataFrame]
    notes: list[str]
    files: list[Path] = field(default_factory=list)
    run_id: str | None = None
    answer: list[str] = field(default_factory=list)  # a sentence per column: who is best, by how much, significant?
    kind: str = kinds.MULTICLASS  # the task kind of every run compared (kinds.py)
    chance: kinds.Chance | None = None  # the primary metric's chance, where known


def cell_text(row: pd.Series, metric: Metric | None = None) -> str:
    m = metric or metric_of(row)
    text = m.number(row["mean"])
    if not np.isnan(row.get("ci_low", np.nan)):
        text += f" [{m.number(row['ci_low'])}, {m.number(row['ci_high'])}]"
    if not np.isnan(row["std_folds"]):
        text += f" ±{m.number(row['std_folds'])} (folds)"
    if not np.isnan(row["std_seeds"]):
        text += f" ±{m.number(row['std_seeds'])} (seeds)"
    return text + f" · n={row['n_runs']}"


def secondary_text(row: pd.Series, metric: Metric) -> str:
    """A cell's secondary metric (ROC-AUC, MAE): the mean over folds and seeds ±folds' spread."""
    mean = row.get("secondary_mean", np.nan)
    if pd.isna(mean):
        return "—"
    spread = row.get("secondary_std_folds", np.nan)
    return metric.number(mean) + ("" if pd.isna(spread) else f" ±{metric.number(spread)} (folds)")


def plain(v: float) -> str:
    """A cost in one notation throughout the table: three significant digits, never an
    exponent (1,920 and 419, not 1.92e+03 and 419)."""
    if np.isnan(v):
        return "—"
    v = float(f"{v:.3g}")
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{max(0, 2 - int(np.floor(np.log10(abs(v)))))}f}" if v else "0"


def column(size: str, clf: str, experiment: str) -> str:
    """A table column's title: runs of a preset are labelled with it (experiment=paper: reproductions)."""
    if experiment == DEFAULT_EXPERIMENT:
        return f"{size} · {clf}"
    kind = "reproduction" if experiment == "paper" else "preset"
    return f"{size} · {clf} · {kind} (experiment={experiment})"


def suffix(experiment: str) -> str:
    return "" if experiment == DEFAULT_EXPERIMENT else f"_{experiment}"


def columns(summary: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The comparison's columns, (feature size, classifier, preset), in the table's order."""
    present = set(zip(summary["feature_size"], summary["classifier"], summary["experiment"]))
    experiments = sorted(set(summary["experiment"]), key=lambda e: (e != DEFAULT_EXPERIMENT, e))
    return [(s, c, e) for e in experiments for s in SIZES for c in sorted(summary["classifier"].unique()) if (s, c, e) in present]


def table(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per front-end; a column per feature size, classifier and preset (the primary
    metric; multilabel and regression, a column of the secondary metric beside each); cost; the
    paper's (or, on MagnaTagATune, the trained models' published ROC-AUC / PR-AUC)."""
    combos = columns(summary)
    metric = metric_of(summary)
    second = kinds.secondary(summary["kind"].iloc[0]) if "kind" in summary and len(summary) else None
    rows = []
    for fe in figures.frontend_order(summary):
        mine = summary[summary["frontend"] == fe]
        row = {"front-end": fe, "input": mine["input"].iloc[0]}
        for size, clf, exp in combos:
            hit = mine[(mine["feature_size"] == size) & (mine["classifier"] == clf) & (mine["experiment"] == exp)]
            row[column(size, clf, exp)] = cell_text(hit.iloc[0], metric) if len(hit) else "—"
            if second is not None:
                row[f"{column(size, clf, exp)} · {second.label}"] = secondary_text(hit.iloc[0], second) if len(hit) else "—"
        for size in SIZES:
            hit = mine[mine["feature_size"] == size]
            if len(hit):
                row[f"GFLOP/clip {size}"] = plain(hit["gflops_per_clip"].mean())
                row[f"extract ms/clip {size}"] = plain(hit["extract_ms_per_clip"].mean())
        if is_papers(dataset):
            paper = [f"{v} ({s} · {c})" for s, c, _ in combos if (v := published(dataset, fe, s, c)) is not None]
            row["published (Pons & Serra 2019)"] = "; ".join(dict.fromkeys(paper)) or "—"
        if is_tagging(dataset):
            row["published, trained (Pons 2019): ROC-AUC / PR-AUC"] = published_tagging(dataset, fe) or "—"
        rows.append(row)
    return pd.DataFrame(rows).fillna("—")


def missing_notes(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    notes = []
    for status in ("RUNNING", "SCHEDULED"):
        n = int((runs["status"] == status).sum())
        if n:
            notes.append(f"{n} run(s) still {status.lower()} were left out; report again when the sweep ends.")
    failed = int((runs["status"] == "FAILED").sum())
    if failed:
        notes.append(f"{failed} failed run(s) were left out.")
    pruned = runs.attrs.get("n_pruned", 0)
    if pruned:
        notes.append(f"{pruned} pruned trial(s) (stopped after some folds) were left out: they are no finished result.")
    present = set(summary["frontend"])
    absent = [fe for fe in native_frontends() if fe not in present]
    if absent:
        notes.append("No runs for front-end(s): " + ", ".join(absent) + ".")
    for fe, group in summary.groupby("frontend"):
        sizes = set(group["feature_size"])
        if fe != "mfcc" and set(group["input"]) != {"imported"} and sizes != set(SIZES):
            notes.append(f"{fe}: only feature size {', '.join(sorted(sizes))}.")
    single = summary[summary["n_seeds"] < 2]
    if len(single):
        notes.append(
            f"{len(single)} cell(s) ran one seed only: no variance over seeds there "
            "(sweep seed=1,2,3 to separate it from the variance over folds)."
        )
    return notes


TESTS = {
    "corrected resampled t": "corrected resampled t-test over folds",
    "exact McNemar": "exact McNemar test on the test clips",
    "paired bootstrap": f"paired bootstrap over the test clips ({CLIP_BOOTSTRAP} resamples)",
}
SIGNIFICANT = f"significant at the {100 * ALPHA:g}% level"


def pair_note(r: pd.Series, metric: Metric = ACCURACY) -> str:
    """One pair in words: the difference with its interval and the corrected p, or that the data
    cannot tell them apart."""
    sign = 1 if r["mean_diff"] >= 0 else -1  # written as the larger minus the smaller
    first, second = (r["a"], r["b"]) if sign > 0 else (r["b"], r["a"])
    low, high = sorted((sign * r["ci_low"], sign * r["ci_high"]))
    m = metric
    difference = f"{first} - {second} = {m.diff(sign * r['mean_diff'])}{m.points} [{m.diff(low)}, {m.diff(high)}]"
    stat = f"p={r['p']:.3g}, Holm p={r['p_holm']:.3g}, n={r['n']}"
    if r["p_holm"] < ALPHA:
        return f"  {first} > {second}: {difference} ({stat})"
    if r["p"] < ALPHA:  # the interval, one pair's, may exclude 0: say why that is not enough
        return f"  cannot tell {first} and {second} apart once every pair is counted (Holm): {difference} ({stat})"
    return f"  cannot tell {first} and {second} apart: {difference} ({stat})"


def significance_notes(pairs: pd.DataFrame, cell: str, metric: Metric = ACCURACY) -> list[str]:
    """One column's pairs for the terminal: how many, by which test (table.md's section Method
    says why that test), how many differ, then each pair in words."""
    tested = pairs[pairs["p"].notna()]
    kinds = " and the ".join(TESTS[k] for k in sorted(set(tested["test"])))
    notes = [
        f"{cell}: {len(tested)} pair(s) of front-ends compared by the {kinds}, Holm-corrected over the pairs, "
        f"intervals {int(100 * LEVEL)}%; different at {ALPHA}: {int((tested['p_holm'] < ALPHA).sum())}"
    ]
    return notes + [pair_note(r, metric) for _, r in tested.sort_values("p_holm").iterrows()]


def oriented(pairs: pd.DataFrame, first: str, second: str) -> pd.Series | None:
    """The test of ``first`` against ``second`` as first minus second (``pairwise`` writes each
    pair in name order), or None where the two were not compared."""
    hit = pairs[((pairs["a"] == first) & (pairs["b"] == second)) | ((pairs["a"] == second) & (pairs["b"] == first))]
    if hit.empty:
        return None
    r = hit.iloc[0].copy()
    if r["a"] != first:
        r["a"], r["b"] = first, second
        r["mean_diff"], r["ci_low"], r["ci_high"] = -r["mean_diff"], -r["ci_high"], -r["ci_low"]
    return r


def difference(r: pd.Series, metric: Metric = ACCURACY) -> str:
    """A difference in points with its interval, where there is one: +10.7 [+3.7, +17.7]."""
    text = metric.diff(r["mean_diff"])
    if np.isfinite(r["ci_low"]):
        text += f" [{metric.diff(r['ci_low'])}, {metric.diff(r['ci_high'])}]"
    return text


def verdict(r: pd.Series | None, n_pairs: int) -> str:
    """Whether a difference is significant, in words, with the p-values that say so: by the
    Holm-corrected p, as the pairs' verdicts are."""
    if r is None:
        return "untested (no per-clip predictions to compare the two on)"
    if np.isnan(r["p"]):
        return f"untested (the corrected t-test needs 3 folds in common; these have {r['n']})"
    ps = f"p={r['p']:.3g}, Holm p={r['p_holm']:.3g} over {n_pairs} pair{'s' * (n_pairs != 1)}"
    if r["p_holm"] < ALPHA:
        return f"{SIGNIFICANT} ({ps})"
    if r["p"] < ALPHA:
        return f"not {SIGNIFICANT} once every pair is counted ({ps})"
    return f"not {SIGNIFICANT} ({ps})"


def answer(part: pd.DataFrame, pairs: pd.DataFrame | None, cell: str, metric: Metric | None = None) -> str:
    """One column of the table in a sentence: the best front-end, its lead over the runner-up in
    points with the interval of the difference, and whether that lead is significant. The lead
    is the table's; where the test's own difference is another (McNemar's counts a clip right
    where most seeds get it right; the t-test pairs the folds both have), that one comes too."""
    m = metric or metric_of(part)
    ranked = part.sort_values(["mean", "frontend"], ascending=[False, True])
    best = ranked.iloc[0]
    if len(ranked) < 2:
        return f"{cell}: only {best['frontend']} ran ({m.value(best['mean'])}), nothing to compare it with."
    second = ranked.iloc[1]
    r = oriented(pairs, best["frontend"], second["frontend"]) if pairs is not None else None
    lead = m.diff(best["mean"] - second["mean"])
    if r is None or not np.isfinite(r["ci_low"]):
        by = f"{lead}{m.points}"
    elif m.diff(r["mean_diff"]) == lead:
        by = f"{lead}{m.points} [{m.diff(r['ci_low'])}, {m.diff(r['ci_high'])}]"
    else:
        by = f"{lead}{m.points} (paired as the test compares them: {difference(r, m)})"
    n_pairs = int(pairs["p"].notna().sum()) if pairs is not None else 0
    a, b = m.value(best["mean"]), m.value(second["mean"])
    if a == b:
        return f"{cell}: {best['frontend']} and {second['frontend']} tie at {a}, {by}; {verdict(r, n_pairs)}."
    return f"{cell}: {best['frontend']} is best with {a}, ahead of {second['frontend']} ({b}) by {by}; {verdict(r, n_pairs)}."


def pairs_table(pairs: dict[tuple[str, str, str], pd.DataFrame], summary: pd.DataFrame, metric: Metric | None = None) -> pd.DataFrame:
    """Every pair of front-ends, a row each, written as the better minus the worse over all
    cells; a column per column of the comparison: the difference in points with its interval,
    p, Holm p, n and the verdict; the last row counts the pairs that differ."""
    m = metric or metric_of(summary)
    rank = summary.groupby("frontend")["mean"].mean().sort_values(ascending=False, kind="stable")
    order = {fe: i for i, fe in enumerate(rank.index)}
    names = sorted({tuple(sorted((r["a"], r["b"]), key=order.get)) for p in pairs.values() for _, r in p.iterrows()},
                   key=lambda ab: (order[ab[0]], order[ab[1]]))  # fmt: skip
    out = pd.DataFrame({"pair": [f"{a} - {b}" for a, b in names] + [f"pairs different at {ALPHA}"]})
    for (size, clf, exp), p in ((c, pairs[c]) for c in columns(summary) if c in pairs):
        cells = []
        for a, b in names:
            r = oriented(p, a, b)
            if r is None:
                cells.append("—")
            elif np.isnan(r["p"]):
                cells.append(f"untested: {difference(r, m)} · n={r['n']}")
            else:  # the verdict first: a cell opening with a sign would read as a list item to Markdown
                word = "differ" if r["p_holm"] < ALPHA else "cannot tell apart" + (" (Holm)" if r["p"] < ALPHA else "")
                cells.append(f"{word}: {difference(r, m)} · p={r['p']:.3g} · Holm p={r['p_holm']:.3g} · n={r['n']}")
        tested = p[p["p"].notna()]
        out[column(size, clf, exp)] = cells + [f"{int((tested['p_holm'] < ALPHA).sum())} of {len(tested)}"]
    return out


PLURAL = {"accuracy": "accuracies", "map": "mAPs", "r2": "R² values"}


def method(best: pd.DataFrame, tested: bool, premise: bool, sections_method: list[str], metric: Metric | None = None) -> list[str]:
    """How the report's numbers were computed, once, for the parts this report shows."""
    m = metric or metric_of(best)
    partitions = [set(f) == {"test"} for f in best["folds"]]
    out = [
        "Cells: for each front-end, feature size, classifier and seed, the finished run with the best validation "
        f"{m.label} (a sweep's best trial); a cell's {m.label} is the mean of their test {PLURAL.get(m.name, m.label)} over "
        f"folds and seeds. Every interval is {int(100 * LEVEL)}%."
    ]
    if m.high is not None and m.low is not None:
        clipped = f"clipped to [0, 100] ({m.what} cannot leave it; with few folds the t-interval would)"
    else:
        clipped = f"clipped at {m.high:g} ({m.what} cannot exceed it; with few folds the t-interval would)"
    if not all(partitions):
        out.append(
            "Fold datasets: each pair of front-ends by the corrected resampled t-test over folds (Nadeau & Bengio 2003, "
            "Machine Learning 52(3)). The folds' training sets overlap, so the variance of the mean difference is "
            "(1/k + n_test/n_train) s^2, not s^2/k, with the protocol's n_test/n_train (honest: 1/(k-2); paper: 1/(k-1)); "
            "seeds are averaged within a fold, since they are not replications of the data. A cell's interval is the "
            f"t-interval from the same corrected variance, {clipped}."
        )
    if any(partitions) and m is ACCURACY:
        out.append(
            "Fixed partitions: each pair by the exact McNemar test (McNemar 1947, Psychometrika 12(2)) on the test "
            "clips, a clip counting as right for a front-end when most of its seeds get it right, with the Wald interval "
            "of the paired difference; a cell's interval is Wilson's score interval over the test clips (Wilson 1927, "
            "JASA 22(158))."
        )
    elif any(partitions):
        out.append(
            f"Fixed partitions: each pair by a paired bootstrap over the test clips (Efron & Tibshirani 1993): {CLIP_BOOTSTRAP} "
            "resamples of the clips both front-ends were tested on, drawn with replacement (seeded, the same resamples for "
            f"both), the {m.label} of each (the mean over its seeds) recomputed from the runs' predictions.csv on every "
            "resample. The interval is the resampled differences' percentile interval; p is two-sided, the share of "
            "resampled differences at least as far from the observed one as the observed one is from 0, (1 + count) / "
            f"(1 + {CLIP_BOOTSTRAP}). A cell's interval is the percentile bootstrap of its {m.label} over the same "
            f"resamples, {'within [0, 100]' if m.low is not None else 'clipped at 1, the largest R²'}."
        )
    if tested:
        out.append(
            "Holm's correction (Holm 1979, Scandinavian Journal of Statistics 6(2)) adjusts each p-value for the number "
            f"of pairs in its column; a pair differs, and a lead is significant, where the corrected p is below {ALPHA}. "
            "A pair's own interval may exclude 0 while its corrected p does not clear the bar: the interval is the "
            "pair's alone."
        )
    if premise:
        out.append(
            "Premise: Kendall's tau and Spearman's rho between the random-weight and the trained rankings, with "
            "percentile bootstrap intervals over folds and the exact one-sided p-value of tau (the share of the "
            "orderings of the front-ends that agree as well)."
        )
    return out + sections_method


def run_label(r: pd.Series) -> str:
    return f"run {r['run_id']} ({r['frontend']} · {r['feature_size']} · {r['classifier']} · seed {r['seed']})"


def left_out_lines(dropped: pd.DataFrame) -> list[str]:
    """Every run left out of the comparison, by id, with what it ran and why."""
    return [f"left out: {run_label(r)}: {r['reason']}" for _, r in dropped.iterrows()]


def features_refused_lines(runs: pd.DataFrame, dropped: pd.DataFrame) -> list[str]:
    """Every run in the comparison whose features the CKA map does not look for, and why."""
    kept = runs[runs["features_refused"].notna() & ~runs["run_id"].isin(dropped["run_id"])]
    return [f"left out of the CKA map: {run_label(r)}: {r['features_refused']}" for _, r in kept.iterrows()]


def cell_pairs(uri: str, best: pd.DataFrame, size: str, clf: str, exp: str) -> pd.DataFrame:
    """Every pair of front-ends of one cell, by the test that holds for its protocol: the
    corrected resampled t over folds, or on fixed partitions McNemar on the test clips
    (multiclass) or the paired bootstrap over them (multilabel, regression)."""
    mine = best[(best["feature_size"] == size) & (best["classifier"] == clf) & (best["experiment"] == exp)]
    correct, clips = None, None
    if all(set(f) == {"test"} for f in mine["folds"]):  # fixed partitions: on the clips
        kind = mine["kind"].iloc[0] if "kind" in mine else kinds.MULTICLASS
        if kind == kinds.MULTICLASS:
            correct = {fe: clip_correctness(uri, rows) for fe, rows in mine.groupby("frontend")}
        else:
            clips = {fe: run_clip_scores(uri, rows, kind) for fe, rows in mine.groupby("frontend")}
    return pairwise(best, size, clf, exp, correct, clips)


def partition_intervals(uri: str, best: pd.DataFrame, summary: pd.DataFrame) -> None:
    """Multilabel and regression cells on fixed partitions: their interval, a bootstrap over the
    test clips of their runs' predictions (stats.clip_interval), into ``summary``."""
    for i, cell in summary.iterrows():
        if cell.get("kind", kinds.MULTICLASS) == kinds.MULTICLASS or cell["n_folds"] != 1:
            continue
        rows = best[(best["frontend"] == cell["frontend"]) & (best["feature_size"] == cell["feature_size"])
                    & (best["classifier"] == cell["classifier"]) & (best["experiment"] == cell["experiment"])]  # fmt: skip
        if all(set(f) == {"test"} for f in rows["folds"]):
            summary.loc[i, ["ci_low", "ci_high"]] = clip_interval(run_clip_scores(uri, rows, cell["kind"]), cell["metric"])


def chance_of(kind: str, best: pd.DataFrame) -> kinds.Chance | None:
    """The primary metric's chance for these runs: 1/classes, the mean of the runs'
    test_chance_map, R² 0."""
    chance_map = pd.to_numeric(best["chance_score"], errors="coerce").mean() if "chance_score" in best else None
    return kinds.chance(kind, figures.class_count(best), chance_map)


def kind_notes(kind: str, best: pd.DataFrame, chance: kinds.Chance | None) -> list[str]:
    """What the table's reader needs to know of a kind: chance, the tags left out of a split."""
    if kind == kinds.MULTILABEL:
        out = [
            ("Chance: a constant scorer (every clip the same score) has an mAP of "
             f"{100 * chance.value:.1f}% here, the mean tag prevalence over the tags kept (the runs' test_chance_map, "
             "mean over runs), and a ROC-AUC of 50." if chance else
             "Chance: a constant scorer's ROC-AUC is 50; its mAP (the mean tag prevalence) was not logged (test_chance_map).")
        ]  # fmt: skip
        left = pd.to_numeric(best.get("tags_left_out", pd.Series(dtype=float)), errors="coerce")
        if (left > 0).any():
            out.append(f"{int((left > 0).sum())} chosen run(s) left tags with no positive test clip out of a split's macro "
                       f"average (fold<k>_tags_left_out): up to {int(left.max())} per run.")  # fmt: skip
        return out
    if kind == kinds.REGRESSION:
        return ["Chance: R² 0 is what predicting the mean target scores; below 0 is worse than that, and R² has no lower bound. "
                "MAE is in the targets' units."]  # fmt: skip
    return []


def tagging_context(dataset: str, summary: pd.DataFrame) -> list[str]:
    """MagnaTagATune: the trained models' published figures beside the best random-weight cell
    of the front-end with each one's architecture."""
    rows = []
    for model, (roc, pr) in TRAINED_TAGGING[dataset].items():
        fe = next((f for f, m in TAGGING_FRONTENDS.items() if m == model), None)
        mine = summary[summary["frontend"] == fe].sort_values("mean", ascending=False)
        random = "—"
        if len(mine):
            top = mine.iloc[0]
            roc_random = top.get("secondary_mean", np.nan)
            random = f"{100 * roc_random:.2f} / {100 * top['mean']:.2f} ({fe}, {top['feature_size']} · {top['classifier']})" \
                if pd.notna(roc_random) else f"— / {100 * top['mean']:.2f} ({fe}, {top['feature_size']} · {top['classifier']})"
        rows.append({"trained model (published)": model, "ROC-AUC": f"{roc:.2f}", "PR-AUC": f"{pr:.2f}",
                     "random weights here: ROC-AUC / mAP": random})  # fmt: skip
    return [
        f"{TAGGING_SOURCE}, in %; beside each, the best cell here of elm_audio's front-end with its architecture, "
        "with random weights (mAP is the macro average of PR-AUC over the tags). Context, not a comparison: the trained "
        "models learned their weights on MagnaTagATune's training clips.",
        "",
        markdown.table(pd.DataFrame(rows), index=False, disable_numparse=True),
    ]


KIND_COLUMNS = ["kind", "metric", "secondary", "secondary_mean", "secondary_std_folds", "chance"]  # not in a multiclass table.csv


def kind_folders(out: Path, dataset: str, present: list[str]) -> dict[str, Path]:
    """Each kind's report folder: ``out/<dataset>`` for the only kind, and for multiclass
    always; ``out/<dataset>/<kind>`` for the others where the experiment holds several."""
    return {k: out / dataset if len(present) == 1 or k == kinds.MULTICLASS else out / dataset / k for k in present}


@rc_context({"text.parse_math": False})  # a '$' in a front-end's name or a class label opens no formula
def build_all(uri: str, dataset: str, experiment_id: str, out: Path, cache_dir: Path | None = None) -> list[Report]:
    """A report per task kind of one dataset's experiment (kind_folders says where), multiclass
    first; runs of different kinds are never compared. A run whose kind tag names no kind is
    left out (trust.kind_problem) and listed in the first report."""
    runs = load_runs(uri, experiment_id)
    valid = runs["kind"].isin(kinds.KINDS) if len(runs) else pd.Series(dtype=bool)
    present = [k for k in kinds.KINDS if (runs["kind"] == k).any()] or [kinds.MULTICLASS]
    folders = kind_folders(out, dataset, present)
    reports = []
    for i, kind in enumerate(present):
        mine = runs[(runs["kind"] == kind) | (~valid if i == 0 else False)]
        mine.attrs["n_pruned"] = runs.attrs.get("n_pruned", 0) if i == 0 else 0  # not told apart by kind: counted once
        others = [f"{k} runs (compared on {kinds.primary(k).label}) in {folders[k]}" for k in present if k != kind]
        reports.append(build_kind(uri, dataset, experiment_id, folders[kind], mine, kind, cache_dir, others))
    return reports


def build(uri: str, dataset: str, experiment_id: str, out: Path, cache_dir: Path | None = None) -> Report:
    """The report on one dataset's experiment, written into ``out/<dataset>`` (``dataset``: a
    name trust.dataset_problem accepts) and logged as an MLflow run of its own. Where the
    experiment holds several task kinds, every kind's report is written (``build_all``) and
    the first (multiclass, where there is one) returned."""
    return build_all(uri, dataset, experiment_id, out, cache_dir)[0]


@rc_context({"text.parse_math": False})
def build_kind(uri: str, dataset: str, experiment_id: str, folder: Path, runs: pd.DataFrame, kind: str,
               cache_dir: Path | None = None, others: list[str] | None = None) -> Report:  # fmt: skip
    """The report on the runs of one kind (``runs``), written into ``folder``: the table on the
    kind's primary metric, its figures and tests; ``others`` names the kinds reported apart."""
    metric = kinds.primary(kind)
    best = select_best(runs)
    dropped = left_out(runs)
    apart = [f"This experiment also holds {o}: runs of different kinds are never compared, so they are reported apart."
             for o in others or []]  # fmt: skip
    if best.empty:
        return Report(dataset, pd.DataFrame(), {}, [f"{dataset}: no finished runs to compare.", *left_out_lines(dropped), *apart],
                      kind=kind)  # fmt: skip
    summary = summarize(best)
    partition_intervals(uri, best, summary)
    folder.mkdir(parents=True, exist_ok=True)
    chance = chance_of(kind, best)
    report = Report(dataset, summary, {}, missing_notes(runs, summary) + apart, kind=kind, chance=chance)
    left_out_runs = left_out_lines(dropped) + features_refused_lines(runs, dropped)
    files = report.files
    dropped.to_csv(folder / "left_out.csv", index=False)
    files.append(folder / "left_out.csv")

    def save_figure(fig, name: str) -> None:
        fig.savefig(folder / name, dpi=130)
        files.append(folder / name)

    for (exp, size), part in summary.groupby(["experiment", "feature_size"]):
        title = f"{dataset}: feature size {size}" + ("" if exp == DEFAULT_EXPERIMENT else f", experiment={exp}")
        save_figure(figures.bars(part, size, title, chance, metric), f"bars_{size}{suffix(exp)}.png")
    significance = []
    for size, clf, exp in columns(summary):
        part = summary[(summary["feature_size"] == size) & (summary["classifier"] == clf) & (summary["experiment"] == exp)]
        if part["frontend"].nunique() >= 2:
            pairs = cell_pairs(uri, best, size, clf, exp)
            report.pairs[(size, clf, exp)] = pairs
            significance += significance_notes(pairs, column(size, clf, exp), metric)
            order = [fe for fe in figures.frontend_order(summary) if fe in set(part["frontend"])]
            name = f"{size}_{clf}{suffix(exp)}"
            save_figure(figures.significance(pairs, order, f"{dataset}: {column(size, clf, exp)}", metric), f"significance_{name}.png")
            pairs.assign(feature_size=size, classifier=clf, experiment=exp).to_csv(folder / f"pairs_{name}.csv", index=False)
            files.append(folder / f"pairs_{name}.csv")
        report.answer.append(answer(part, report.pairs.get((size, clf, exp)), column(size, clf, exp), metric))
    save_figure(figures.cost(summary, f"{dataset}: {metric.label} against cost", chance, metric), "cost.png")
    premise_notes = []
    for p in premises(best):
        name = f"premise_{p.feature_size}{suffix(p.experiment)}"
        save_figure(premise_figure(p, f"{dataset}: {p.feature_size}, random against trained"), f"{name}.png")
        premise_notes += p.notes
        pd.DataFrame({"random": p.random, "trained": p.trained, "random_classifier": pd.Series(p.classifiers)}).to_csv(folder / f"{name}.csv")
        files.append(folder / f"{name}.csv")

    beyond = sections.beyond_accuracy(uri, dataset, best, summary, folder, cache_dir, save_figure, files, kind)
    shown = sections.with_knn(table(summary, dataset), beyond.knn, lambda r: cell_text(r, metric))
    (summary.drop(columns=[c for c in KIND_COLUMNS if c in summary]) if kind == kinds.MULTICLASS else summary).to_csv(
        folder / "table.csv", index=False)  # fmt: skip
    legend = [
        f"Cells: mean test {metric.label}{metric.unit} [{int(100 * LEVEL)}% interval] ±standard deviation over folds (the data) "
        "±standard deviation over seeds (the random weights) · n: runs the best-validation ones were chosen from."
    ]
    second = kinds.secondary(kind)
    if second is not None:
        legend.append(f"Columns '· {second.label}': the chosen runs' test {second.label}{second.unit}, mean over folds and seeds "
                      "±standard deviation over folds; the runs were chosen on the primary metric.")  # fmt: skip
    legend += kind_notes(kind, best, chance)
    if is_papers(dataset):
        legend.append(
            "Published: Pons & Serra (ICASSP 2019), mean over 3 runs, as printed; their fold datasets used "
            f"the paper's protocol (protocol.mode=paper). Trained CNNs (other papers): {TRAINED[dataset]}."
        )
        reproduced = "paper" in set(summary["experiment"])
        legend.append(
            "Columns marked 'reproduction (experiment=paper)' come from runs that behave as the original code: "
            "those are the figures to set beside the published ones. The other columns use elm_audio's clean "
            "method (docs/method.md, 'Differences from the original code') and are not the paper's figures."
            + ("" if reproduced else " No reproduction runs yet: run with experiment=paper to add them.")
        )
    if is_tagging(dataset):
        legend.append(f"Published, trained: {TAGGING_SOURCE}; ROC-AUC / PR-AUC in %, for the front-ends with a trained "
                      "model's architecture (section 'Trained models, published').")  # fmt: skip
    absent = [] if report.pairs else ["Every pair of front-ends: fewer than two front-ends per column, nothing to test."]
    if not premise_notes:
        absent.append(
            f"Premise and its baselines: no feature size has random and trained runs (weights=trained) for at least "
            f"{MIN_FRONTENDS} front-ends."
        )
    unit = "points" if metric.percent else metric.label
    every_pair = markdown.section("Every pair of front-ends", [
        f"Each cell: the verdict (differ: Holm p below {ALPHA}; cannot tell apart (Holm): p below {ALPHA} for the pair "
        f"alone, not once every pair is counted; cannot tell apart), then the row's first front-end minus its second in "
        f"{unit} [{int(100 * LEVEL)}% interval] · p · Holm p over the column's pairs · n: folds or test clips in common.",
        "",
        markdown.table(pairs_table(report.pairs, summary, metric), index=False, disable_numparse=True),
    ]) if report.pairs else []  # fmt: skip
    heading = f"# {markdown.escape(dataset)}: front-ends compared" + (
        "" if kind == kinds.MULTICLASS else f" on {metric.label} ({kind})")
    text = "\n".join(
        [heading, ""] + markdown.bullets(report.answer)
        + ["", markdown.table(shown, index=False, disable_numparse=True)]
        + markdown.section("Notes", markdown.bullets(legend + report.notes + ([] if left_out_runs else ["No run was left out."])))
        + (markdown.section("Left out", markdown.bullets([line.removeprefix("left out: ") for line in left_out_runs]))
           if left_out_runs else [])
        + every_pair
        + (markdown.section("Trained models, published (context)", tagging_context(dataset, summary)) if is_tagging(dataset) else [])
        + (markdown.section("Premise: does the random-weight ranking predict the trained one?", markdown.bullets(premise_notes))
           if premise_notes else [])
        + beyond.lines
        + (markdown.section("Not in this report", markdown.bullets(absent + beyond.absent)) if absent + beyond.absent else [])
        + markdown.section("Method", markdown.bullets(method(best, bool(report.pairs), bool(premise_notes), beyond.method, metric)))
    )  # fmt: skip
    (folder / "table.md").write_text(text + "\n")
    files += [folder / "table.md", folder / "table.csv"]
    report.notes += left_out_runs + significance + premise_notes + beyond.notes
    report.run_id = log_report(uri, experiment_id, folder, summary, kind)
    return report


def log_report(uri: str, experiment_id: str, folder: Path, summary: pd.DataFrame, kind: str = kinds.MULTICLASS) -> str:
    """The report's MLflow run (tag elm_audio.role=report; ``kind``): the folder's files, not
    the folders other kinds' reports may hold inside it."""
    run_id = tracking.create_run(uri, experiment_id, {"elm_audio.role": "report", "kind": kind}, "report")
    tracking.log_params(uri, run_id, {"cells": len(summary)})
    for path in sorted(folder.iterdir()):
        if path.is_file():
            tracking.log_file(uri, run_id, path)
    tracking.end_run(uri, run_id)
    tracking.use(uri)
    return run_id
