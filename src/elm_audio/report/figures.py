"""The report's figures: accuracy bars like the paper's, the significance matrix, and
accuracy against cost. Built with matplotlib's object API (no pyplot state), each sized for the
number of front-ends it shows, with constrained layout so that titles, legends and labels stay
inside it (tests/test_figures.py renders each for one, two and eleven front-ends)."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

GROUPS = ("waveform", "spectrogram", "baseline", "imported", "unknown")
SIZE_COLOURS = {"small": "C0", "large": "C1"}


def frontend_order(summary: pd.DataFrame) -> list[str]:
    """Front-ends grouped by input (waveform, spectrogram, the MFCC baseline, then imported models
    and vectors), by name within."""
    kinds = summary.drop_duplicates("frontend").set_index("frontend")["input"]
    return sorted(kinds.index, key=lambda fe: (GROUPS.index(kinds[fe]) if kinds[fe] in GROUPS else 9, fe))


def wrapped(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width_inches`` at ``fontsize`` points."""
    chars = max(20, int(width_inches * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def label_points(ax: Axes, xs, ys, texts, log_x: bool = False) -> None:
    """A small label beside each point, to its left where the point is in the right third of
    the axes, so that no label runs out of the figure."""
    x = np.log10(np.asarray(xs, dtype=float)) if log_x else np.asarray(xs, dtype=float)
    low, high = np.nanmin(x), np.nanmax(x)
    for xi, xv, yv, text in zip(x, xs, ys, texts):
        right = high > low and (xi - low) / (high - low) > 0.66
        ax.annotate(text, (xv, yv), fontsize=7, xytext=(-4 if right else 4, 3), textcoords="offset points",
                    ha="right" if right else "left")  # fmt: skip


def bars(summary: pd.DataFrame, feature_size: str, title: str) -> Figure:
    """Mean test accuracy per front-end, a bar per classifier; error bars: the cell's 95%
    interval as the table gives it, within 0 to 100%; a gap between input groups."""
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
    fig = Figure(figsize=(max(6.0, 0.75 * len(order) + 3.0), 4.6), layout="constrained")
    ax = fig.subplots()
    for i, clf in enumerate(classifiers):
        rows = part[part["classifier"] == clf].set_index("frontend").reindex(order)
        mean = 100 * rows["mean"].to_numpy(dtype=float)
        low = 100 * np.clip(rows["ci_low"].to_numpy(dtype=float), 0, 1) if "ci_low" in rows else np.full_like(mean, np.nan)
        high = 100 * np.clip(rows["ci_high"].to_numpy(dtype=float), 0, 1) if "ci_high" in rows else np.full_like(mean, np.nan)
        yerr = np.nan_to_num(np.vstack([mean - low, high - mean]).clip(min=0))
        ax.bar(np.array(x) + (i - (len(classifiers) - 1) / 2) * width, mean, width, yerr=yerr, capsize=3,
               label=clf.upper(), error_kw={"elinewidth": 1})  # fmt: skip
    ax.set_xticks(x, order, rotation=35, ha="right")
    for kind in dict.fromkeys(kinds[order]):
        where = [xi for xi, fe in zip(x, order) if kinds[fe] == kind]
        ax.text(np.mean(where), 1.01, kind, transform=ax.get_xaxis_transform(), ha="center", fontsize=9, color="0.35")
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("error bars: 95% interval of the mean over folds and seeds (as in table.md)", fontsize=8, color="0.3")
    ax.set_title(wrapped(title, fig.get_figwidth() - 1.5, 11), pad=16)
    ax.legend(title="classifier", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
    return fig


def points(value: float) -> str:
    """A difference in points, one decimal, signed; never "-0.0"."""
    text = f"{value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (relative luminance,
    WCAG 2)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if luminance > 0.179 else "white"


def significance(pairs: pd.DataFrame, order: list[str], title: str) -> Figure:
    """Holm-corrected p-values of the pairs' tests (corrected resampled t or McNemar), and the
    difference row - column in points: the sign says which row is better."""
    n = len(order)
    matrix = np.full((n, n), np.nan)
    diffs = np.full((n, n), np.nan)
    idx = {fe: i for i, fe in enumerate(order)}
    for _, r in pairs.iterrows():
        i, j = idx[r["a"]], idx[r["b"]]
        matrix[i, j] = matrix[j, i] = r["p_holm"]
        diffs[i, j], diffs[j, i] = r["mean_diff"], -r["mean_diff"]
    cell = 0.72
    fig = Figure(figsize=(max(5.2, 2.6 + cell * n), max(4.2, 2.2 + cell * n)), layout="constrained")
    ax = fig.subplots()
    cmap, norm = colormaps["viridis_r"], Normalize(0, 1)
    image = ax.imshow(matrix, norm=norm, cmap=cmap)
    for i in range(n):
        for j in range(n):
            if not np.isnan(matrix[i, j]):
                mark = "*" if matrix[i, j] < 0.05 else ""
                ax.text(j, i, f"{p_text(matrix[i, j])}{mark}\n{points(100 * diffs[i, j])}", ha="center", va="center",
                        fontsize=7, color=text_colour(cmap(norm(matrix[i, j]))))  # fmt: skip
    ax.set_xticks(range(n), order, rotation=40, ha="right")
    ax.set_yticks(range(n), order)
    ax.set_xlabel("cell: Holm-corrected p (* below 0.05), then row - column in points", fontsize=8, color="0.3")
    ax.set_title(wrapped(title, fig.get_figwidth() - 1.2, 9), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="Holm-corrected p")
    return fig


def cost(summary: pd.DataFrame, title: str) -> Figure:
    """Mean test accuracy against GFLOP per clip (log scale): a marker per classifier, a colour
    per feature size, each point named by its front-end; the legend outside the axes."""
    many = summary["frontend"].nunique() > 4
    fig = Figure(figsize=(9.0, 6.0) if many else (7.0, 4.6), layout="constrained")
    ax = fig.subplots()
    markers = dict(zip(sorted(summary["classifier"].unique()), "os^D"))
    for (clf, size), part in summary.groupby(["classifier", "feature_size"]):
        ax.scatter(part["gflops_per_clip"], 100 * part["mean"], marker=markers[clf] if clf in markers else "o",
                   color=SIZE_COLOURS.get(size, "C2"), label=f"{clf.upper()}, {size}", zorder=3)  # fmt: skip
    named = summary.sort_values("mean", ascending=False).drop_duplicates(["frontend", "feature_size", "experiment"])
    named = named.drop_duplicates(["frontend", "experiment", "gflops_per_clip"])  # mfcc: one cost at both sizes
    texts = [r["frontend"] + ("" if r.get("experiment", "default") == "default" else f" ({r['experiment']})") for _, r in named.iterrows()]
    label_points(ax, named["gflops_per_clip"], 100 * named["mean"], texts, log_x=True)
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel("GFLOP per clip (forward pass, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(wrapped(title, fig.get_figwidth() - 2.0, 11))
    ax.legend(title="classifier, feature size", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
    return fig
