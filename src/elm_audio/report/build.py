"""One dataset's report: table (Markdown and CSV), figures, significance, notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from mlflow.tracking import MlflowClient

from .. import tracking

from ..config import native_frontends
from ..tracking import DEFAULT_EXPERIMENT
from . import figures, markdown, sections
from .collect import clip_correctness, load_runs
from .published import TRAINED, is_papers, published
from .premise import MIN_FRONTENDS, premises
from .premise import figure as premise_figure
from .stats import ALPHA, LEVEL, left_out, pairwise, select_best, summarize

SIZES = ("small", "large")


@dataclass
class Report:
    dataset: str
    summary: pd.DataFrame
    pairs: dict[tuple[str, str], pd.DataFrame]
    notes: list[str]
    files: list[Path] = field(default_factory=list)
    run_id: str | None = None


def cell_text(row: pd.Series) -> str:
    text = f"{100 * row['mean']:.1f}"
    if not np.isnan(row.get("ci_low", np.nan)):
        text += f" [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
    if not np.isnan(row["std_folds"]):
        text += f" ±{100 * row['std_folds']:.1f} (folds)"
    if not np.isnan(row["std_seeds"]):
        text += f" ±{100 * row['std_seeds']:.1f} (seeds)"
    return text + f" · n={row['n_runs']}"


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


def table(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per front-end; a column per feature size, classifier and preset; cost; the paper's."""
    present = set(zip(summary["feature_size"], summary["classifier"], summary["experiment"]))
    experiments = sorted(set(summary["experiment"]), key=lambda e: (e != DEFAULT_EXPERIMENT, e))
    combos = [(s, c, e) for e in experiments for s in SIZES for c in sorted(summary["classifier"].unique()) if (s, c, e) in present]
    rows = []
    for fe in figures.frontend_order(summary):
        mine = summary[summary["frontend"] == fe]
        row = {"front-end": fe, "input": mine["input"].iloc[0]}
        for size, clf, exp in combos:
            hit = mine[(mine["feature_size"] == size) & (mine["classifier"] == clf) & (mine["experiment"] == exp)]
            row[column(size, clf, exp)] = cell_text(hit.iloc[0]) if len(hit) else "—"
        for size in SIZES:
            hit = mine[mine["feature_size"] == size]
            if len(hit):
                row[f"GFLOP/clip {size}"] = plain(hit["gflops_per_clip"].mean())
                row[f"extract ms/clip {size}"] = plain(hit["extract_ms_per_clip"].mean())
        if is_papers(dataset):
            paper = [f"{v} ({s} · {c})" for s, c, _ in combos if (v := published(dataset, fe, s, c)) is not None]
            row["published (Pons & Serra 2019)"] = "; ".join(dict.fromkeys(paper)) or "—"
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
    "corrected resampled t": "corrected resampled t-test over folds (Nadeau & Bengio 2003: the folds' training "
    "sets overlap, so the variance of the mean difference is (1/k + n_test/n_train) s^2, not s^2/k; seeds "
    "averaged within a fold, since they are not replications of the data)",
    "exact McNemar": "exact McNemar test on the test clips (a clip counts as right for a front-end when most of "
    "its seeds get it right)",
}


def pair_note(r: pd.Series) -> str:
    """One pair in words: the difference with its interval and the corrected p, or that the data
    cannot tell them apart."""
    sign = 1 if r["mean_diff"] >= 0 else -1  # written as the larger minus the smaller
    first, second = (r["a"], r["b"]) if sign > 0 else (r["b"], r["a"])
    low, high = sorted((sign * r["ci_low"], sign * r["ci_high"]))
    difference = f"{first} - {second} = {100 * sign * r['mean_diff']:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}]"
    stat = f"p={r['p']:.3g}, Holm p={r['p_holm']:.3g}, n={r['n']}"
    if r["p_holm"] < ALPHA:
        return f"  {first} > {second}: {difference} ({stat})"
    if r["p"] < ALPHA:  # the interval, one pair's, may exclude 0: say why that is not enough
        return f"  cannot tell {first} and {second} apart once every pair is counted (Holm): {difference} ({stat})"
    return f"  cannot tell {first} and {second} apart: {difference} ({stat})"


def significance_notes(pairs: pd.DataFrame, cell: str) -> list[str]:
    tested = pairs[pairs["p"].notna()]
    kinds = sorted(set(tested["test"]))
    notes = [
        f"{cell}: {len(tested)} pair(s) of front-ends compared by "
        + "; ".join(TESTS[k] for k in kinds)
        + f"; Holm's correction over the pairs; intervals {int(100 * LEVEL)}%. Different at {ALPHA}: "
        + str(int((tested["p_holm"] < ALPHA).sum()))
    ]
    notes += [pair_note(r) for _, r in tested.sort_values("p_holm").iterrows()]
    return notes


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
    corrected resampled t over folds, or on fixed partitions McNemar on the test clips."""
    mine = best[(best["feature_size"] == size) & (best["classifier"] == clf) & (best["experiment"] == exp)]
    correct = None
    if all(set(f) == {"test"} for f in mine["folds"]):  # fixed partitions: McNemar on the clips
        correct = {fe: clip_correctness(uri, rows) for fe, rows in mine.groupby("frontend")}
    return pairwise(best, size, clf, exp, correct)


@rc_context({"text.parse_math": False})  # a '$' in a front-end's name or a class label opens no formula
def build(uri: str, dataset: str, experiment_id: str, out: Path, cache_dir: Path | None = None) -> Report:
    """The report on one dataset's experiment, written into ``out/<dataset>`` (``dataset``: a
    name trust.dataset_problem accepts) and logged as an MLflow run of its own."""
    runs = load_runs(uri, experiment_id)
    best = select_best(runs)
    dropped = left_out(runs)
    if best.empty:
        return Report(dataset, pd.DataFrame(), {}, [f"{dataset}: no finished runs to compare.", *left_out_lines(dropped)])
    summary = summarize(best)
    folder = out / dataset
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(dataset, summary, {}, missing_notes(runs, summary))
    left_out_runs = left_out_lines(dropped) + features_refused_lines(runs, dropped)
    files = report.files
    dropped.to_csv(folder / "left_out.csv", index=False)
    files.append(folder / "left_out.csv")

    def save_figure(fig, name: str) -> None:
        fig.savefig(folder / name, dpi=130)
        files.append(folder / name)

    for (exp, size), part in summary.groupby(["experiment", "feature_size"]):
        title = f"{dataset}: feature size {size}" + ("" if exp == DEFAULT_EXPERIMENT else f", experiment={exp}")
        save_figure(figures.bars(part, size, title), f"bars_{size}{suffix(exp)}.png")
    significance = []
    for (size, clf, exp), part in summary.groupby(["feature_size", "classifier", "experiment"]):
        if part["frontend"].nunique() < 2:
            continue
        pairs = cell_pairs(uri, best, size, clf, exp)
        report.pairs[(size, clf, exp)] = pairs
        significance += significance_notes(pairs, column(size, clf, exp))
        order = [fe for fe in figures.frontend_order(summary) if fe in set(part["frontend"])]
        name = f"{size}_{clf}{suffix(exp)}"
        save_figure(figures.significance(pairs, order, f"{dataset}: {column(size, clf, exp)}"), f"significance_{name}.png")
        pairs.assign(feature_size=size, classifier=clf, experiment=exp).to_csv(folder / f"pairs_{name}.csv", index=False)
        files.append(folder / f"pairs_{name}.csv")
    save_figure(figures.cost(summary, f"{dataset}: accuracy against cost"), "cost.png")
    premise_notes = []
    for p in premises(best):
        name = f"premise_{p.feature_size}{suffix(p.experiment)}"
        save_figure(premise_figure(p, f"{dataset}: {p.feature_size}, random against trained"), f"{name}.png")
        premise_notes += p.notes
        pd.DataFrame({"random": p.random, "trained": p.trained, "random_classifier": pd.Series(p.classifiers)}).to_csv(folder / f"{name}.csv")
        files.append(folder / f"{name}.csv")

    beyond, beyond_notes, knn = sections.beyond_accuracy(uri, dataset, best, summary, folder, cache_dir,
                                                         save_figure, files)  # fmt: skip
    shown = sections.with_knn(table(summary, dataset), knn, cell_text)
    summary.to_csv(folder / "table.csv", index=False)
    legend = [
        "Cells: mean test accuracy (%) of the best-validation run of each seed, over folds and seeds; "
        "±: standard deviation over folds (the data) and over seeds (the random weights); "
        "n: runs the best ones were chosen from.",
        f"Intervals: {int(100 * LEVEL)}%; on fold datasets the corrected resampled t-interval over folds, "
        "clipped to [0, 100] (an accuracy cannot leave it; with few folds the t-interval would); "
        "on fixed partitions Wilson's over the test clips.",
    ]
    if is_papers(dataset):
        legend.append(
            "Published: Pons & Serra (ICASSP 2019), mean over 3 runs, as printed; their fold datasets used "
            f"the paper's protocol (protocol.mode=paper). Trained CNNs (other papers): {TRAINED[dataset]}."
        )
        reproduced = "paper" in set(summary["experiment"])
        legend.append(
            "Columns marked 'reproduction (experiment=paper)' come from runs that behave as the original code: "
            "those are the figures to set beside the published ones. The other columns use elm_audio's clean "
            "method (README, 'Differences from the original code') and are not the paper's figures."
            + ("" if reproduced else " No reproduction runs yet: run with experiment=paper to add them.")
        )
    text = "\n".join(
        [f"# {markdown.escape(dataset)}: front-ends compared", "", markdown.table(shown, index=False, disable_numparse=True),
         "", "## Notes", ""]
        + markdown.bullets(legend + report.notes)
        + ["", "## Left out", ""]
        + markdown.bullets([line.removeprefix("left out: ") for line in left_out_runs] or ["No run was left out."])
        + ["", "## Significance", ""]
        + markdown.bullets(significance or ["Fewer than two front-ends per cell: nothing to test."])
        + ["", "## Premise: does the random-weight ranking predict the trained one?", ""]
        + markdown.bullets(premise_notes
           or [f"No feature size has random and trained runs (weights=trained) for at least {MIN_FRONTENDS} front-ends."])
        + beyond
    )  # fmt: skip
    (folder / "table.md").write_text(text + "\n")
    files += [folder / "table.md", folder / "table.csv"]
    report.notes += left_out_runs + significance + premise_notes + beyond_notes
    report.run_id = log_report(uri, experiment_id, folder, summary)
    return report


def log_report(uri: str, experiment_id: str, folder: Path, summary: pd.DataFrame) -> str:
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, tags={"elm_audio.role": "report"}, run_name="report")
    client.log_param(run.info.run_id, "cells", len(summary))
    client.log_artifacts(run.info.run_id, str(folder))
    client.set_terminated(run.info.run_id)
    tracking.use(uri)
    return run.info.run_id
