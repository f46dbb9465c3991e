"""The report's figures: accuracy bars like the paper's, the significance matrix, and
accuracy against cost. Built with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

GROUPS = ("waveform", "spectrogram", "baseline", "imported", "unknown")


def frontend_order(summary: pd.DataFrame) -> list[str]:
    """Front-ends grouped by input (waveform, spectrogram, the MFCC baseline, then imported models
    and vectors), by name within."""
    kinds = summary.drop_duplicates("frontend").set_index("frontend")["input"]
    return sorted(kinds.index, key=lambda fe: (GROUPS.index(kinds[fe]) if kinds[fe] in GROUPS else 9, fe))


def bars(summary: pd.DataFrame, feature_size: str, title: str) -> Figure:
    """Mean test accuracy per front-end, a bar per classifier, error bars: the standard deviation
    over folds and seeds together; a gap between input groups."""
    part = summary[summary["feature_size"] == feature_size]
    order = frontend_order(part)
    kinds = part.drop_duplicates("frontend").set_index("frontend")["input"]
    classifiers = sorted(part["classifier"].unique())
    x, pos, last = [], 0.0, None
    for fe in order:
        if last is not None and kinds[fe] != last:
            pos += 0.6
        x.append(pos)
        pos += 1.0
        last = kinds[fe]
    width = 0.8 / max(len(classifiers), 1)
    fig = Figure(figsize=(max(5.0, 0.9 * len(order) + 2), 4.2))
    ax = fig.subplots()
    for i, clf in enumerate(classifiers):
        rows = part[part["classifier"] == clf].set_index("frontend").reindex(order)
        spread = np.sqrt(np.nan_to_num(rows["std_folds"]) ** 2 + np.nan_to_num(rows["std_seeds"]) ** 2)
        ax.bar(np.array(x) + (i - (len(classifiers) - 1) / 2) * width, 100 * rows["mean"], width,
               yerr=100 * spread, capsize=3, label=clf.upper())  # fmt: skip
    ax.set_xticks(x, order, rotation=35, ha="right")
    for kind in dict.fromkeys(kinds[order]):
        where = [xi for xi, fe in zip(x, order) if kinds[fe] == kind]
        ax.text(np.mean(where), 1.01, kind, transform=ax.get_xaxis_transform(), ha="center", fontsize=9, color="0.35")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, pad=16)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def significance(pairs: pd.DataFrame, order: list[str], title: str) -> Figure:
    """Holm-corrected p-values of the pairs' tests (corrected resampled t or McNemar); the sign
    says which row is better."""
    n = len(order)
    matrix = np.full((n, n), np.nan)
    diffs = np.full((n, n), np.nan)
    idx = {fe: i for i, fe in enumerate(order)}
    for _, r in pairs.iterrows():
        i, j = idx[r["a"]], idx[r["b"]]
        matrix[i, j] = matrix[j, i] = r["p_holm"]
        diffs[i, j], diffs[j, i] = r["mean_diff"], -r["mean_diff"]
    fig = Figure(figsize=(1.0 + 0.8 * n, 0.8 + 0.7 * n))
    ax = fig.subplots()
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis_r")
    for i in range(n):
        for j in range(n):
            if not np.isnan(matrix[i, j]):
                mark = "*" if matrix[i, j] < 0.05 else ""
                ax.text(j, i, f"{matrix[i, j]:.2g}{mark}\n{100 * diffs[i, j]:+.1f}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] < 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(n), order, rotation=40, ha="right")
    ax.set_yticks(range(n), order)
    ax.set_title(title + "\nHolm-corrected p (row - column, points)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def cost(summary: pd.DataFrame, title: str) -> Figure:
    """Mean test accuracy against GFLOP per clip (log scale), a marker per classifier."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for k, (clf, part) in enumerate(summary.groupby("classifier")):
        ax.scatter(part["gflops_per_clip"], 100 * part["mean"], marker="os^D"[k % 4], label=clf.upper())
        for _, r in part.iterrows():
            label = f"{r['frontend']} ({r['feature_size']}" + ("" if r.get("experiment", "default") == "default" else f", {r['experiment']}") + ")"
            ax.annotate(label, (r["gflops_per_clip"], 100 * r["mean"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("GFLOP per clip (forward pass)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
