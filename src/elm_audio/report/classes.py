"""Which classes does a front-end win? Per-class recall of every cell, and the per-class
difference between the two best front-ends with an exact McNemar test on each class's clips
(Holm-corrected over the classes)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..stores import tracking
from .figures import classifier_colour, classifier_order, short
from .stats import ALPHA, LEVEL, holm, mcnemar_exact


def cell_name(frontend: str, classifier: str) -> str:
    return f"{frontend} · {classifier}"


def class_table(best: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Classes x cells (front-end · classifier, best first): recall over the test clips of every
    split, the mean over the cell's seeds (their best-validation runs)."""
    columns = {}
    for _, cell in summary.sort_values("mean", ascending=False).iterrows():
        rows = best[(best["frontend"] == cell["frontend"]) & (best["classifier"] == cell["classifier"])]
        per_seed = pd.DataFrame(list(rows["class_accuracy"]))
        if not per_seed.empty:
            columns[cell_name(cell["frontend"], cell["classifier"])] = per_seed.mean()
    return pd.DataFrame(columns).sort_index().rename_axis("class")


def clip_outcomes(uri: str, run_ids: list[str]) -> pd.DataFrame:
    """Per test clip: its label, and whether most of the runs (one per seed) predicted it right
    (ties count as wrong), from their predictions.csv."""
    votes, labels = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            try:
                table = pd.read_csv(tracking.download_artifact(uri, run_id, "predictions.csv", tmp))
            except Exception:  # a run logged without predictions (interrupted, older)
                continue
            votes.append((table["label"].astype(str) == table["prediction"].astype(str)).set_axis(table["clip_id"]))
            labels.update(zip(table["clip_id"], table["label"].astype(str)))
    if not votes:
        return pd.DataFrame(columns=["label", "correct"])
    correct = pd.concat(votes, axis=1).dropna().mean(axis=1) > 0.5
    return pd.DataFrame({"label": [labels[c] for c in correct.index], "correct": correct.to_numpy()}, index=correct.index)


@dataclass
class ClassDifference:
    first: str  # the best cell (front-end · classifier)
    second: str  # the best cell of another front-end
    table: pd.DataFrame  # per class: n, mean_diff (first - second), ci_low, ci_high, p, p_holm
    recall: pd.DataFrame  # classes x cells of the two front-ends (every classifier): recall, as class_table


def two_best(uri: str, best: pd.DataFrame, summary: pd.DataFrame) -> ClassDifference | None:
    """The best cell and the best of another front-end, compared class by class."""
    ranked = summary.sort_values("mean", ascending=False).drop_duplicates("frontend")
    if len(ranked) < 2:
        return None
    outcomes = []
    for _, cell in ranked.head(2).iterrows():
        rows = best[(best["frontend"] == cell["frontend"]) & (best["classifier"] == cell["classifier"])]
        outcomes.append(clip_outcomes(uri, list(rows["run_id"])))
    a, b = outcomes
    common = a.index.intersection(b.index)
    if common.empty:
        return None
    a, b = a.loc[common], b.loc[common]
    rows = []
    for label, clips in a.groupby("label").groups.items():
        result = mcnemar_exact(a.loc[clips, "correct"].to_numpy(), b.loc[clips, "correct"].to_numpy(), LEVEL)
        rows.append({"class": label, "n": len(clips), **{k: result[k] for k in ("mean_diff", "ci_low", "ci_high", "p")}})
    table = pd.DataFrame(rows).set_index("class")
    table["p_holm"] = holm(table["p"].to_numpy())
    names = [cell_name(c["frontend"], c["classifier"]) for _, c in ranked.head(2).iterrows()]
    both = summary[summary["frontend"].isin(ranked.head(2)["frontend"])]
    return ClassDifference(names[0], names[1], table, class_table(best, both))


def figure(d: ClassDifference, title: str) -> Figure:
    """Left: per class, recall of the best cell minus the second (points) with its 95% interval;
    red and * where the exact McNemar test on that class's clips clears 0.05 after Holm's
    correction. Then a panel per classifier (in its colour): the two front-ends' recall per
    class under that classifier, so that each classifier reads as its own series."""
    t = d.table.sort_values("mean_diff")
    fronts = list(dict.fromkeys(name.rsplit(" · ", 1)[0] for name in (d.first, d.second)))
    cells = [c.rsplit(" · ", 1) for c in d.recall.columns]
    classifiers = classifier_order(clf for fe, clf in cells if fe in fronts)
    fig = Figure(figsize=(4.6 + 2.3 * len(classifiers), 1.9 + 0.38 * len(t)), layout="constrained")
    axes = fig.subplots(1, 1 + len(classifiers), sharey=True, squeeze=False, gridspec_kw={"width_ratios": [1.6] + [1] * len(classifiers)})
    ax, facets = axes[0, 0], axes[0, 1:]
    y = np.arange(len(t))
    significant = t["p_holm"] < ALPHA
    ax.barh(y, 100 * t["mean_diff"], xerr=[100 * (t["mean_diff"] - t["ci_low"]), 100 * (t["ci_high"] - t["mean_diff"])],
            color=np.where(significant, "tab:red", "tab:grey"), capsize=2)  # fmt: skip
    ax.set_yticks(y, [f"{short(c)}{' *' if s else ''} (n={n})" for c, s, n in zip(t.index, significant, t["n"])], fontsize=8)
    ax.axvline(0, color="0.3", lw=0.8)
    reach = 100 * float(np.nanmax(np.abs(t[["ci_low", "ci_high", "mean_diff"]].to_numpy(dtype=float)), initial=0.01))
    ax.set_xlim(-1.1 * reach, 1.1 * reach)  # 0 in the middle: the sign reads at a glance
    ax.set_xlabel(f"recall: {d.first}\nminus {d.second}\n(points, 95% interval)", fontsize=8)
    ax.set_title(f"* red: exact McNemar on the\nclass's clips, Holm p < {ALPHA}", fontsize=8)
    for facet, clf in zip(facets, classifiers):
        colour = classifier_colour(clf)
        for fe, fill, size, z in zip(fronts, (colour, "white"), (5, 7.5), (4, 3)):  # on a tie, a dot inside a ring
            column = cell_name(fe, clf)
            if column in d.recall:
                recall = 100 * d.recall[column].reindex(t.index).to_numpy(dtype=float)
                facet.plot(recall, y, "o", color=colour, mfc=fill, ms=size, label=short(fe), zorder=z)
        pair = [cell_name(fe, clf) for fe in fronts]
        if all(c in d.recall for c in pair):
            ends = 100 * d.recall[pair].reindex(t.index).to_numpy(dtype=float)
            facet.hlines(y, ends.min(axis=1), ends.max(axis=1), color=colour, lw=1, alpha=0.5, zorder=2)
        facet.set_xlim(-5, 105)
        facet.set_title(clf.upper(), fontsize=9, color=colour, fontweight="bold")
        facet.set_xlabel("recall (%)", fontsize=8)
        facet.tick_params(axis="y", left=False)
        facet.grid(axis="x", color="0.9", lw=0.6)
    if len(facets):
        markers = [Line2D([], [], ls="", marker="o", color="0.3", mfc=fill, label=short(fe)) for fe, fill in zip(fronts, ("0.3", "white"))]
        facets[-1].legend(handles=markers, title="front-end", loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                          title_fontsize=8)  # fmt: skip
    fig.suptitle(title, fontsize=9)
    return fig


def notes(d: ClassDifference, size: str) -> list[str]:
    won = d.table[d.table["p_holm"] < ALPHA]
    out = [f"{size}: {d.first} against {d.second}, class by class (exact McNemar on each class's clips, "
           f"Holm over {len(d.table)} classes): different in {len(won)}"]  # fmt: skip
    for label, r in d.table.sort_values("p").iterrows():
        verdict = "differ" if r["p_holm"] < ALPHA else "cannot tell apart"
        out.append(f"  {label}: {100 * r['mean_diff']:+.1f} points [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}], "
                   f"p={r['p']:.3g}, Holm p={r['p_holm']:.3g}, n={int(r['n'])} ({verdict})")  # fmt: skip
    return out
