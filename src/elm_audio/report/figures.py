"""The report's figures: bars of the primary metric like the paper's accuracy bars, the
significance matrix, the metric against cost, and what fits the task kind: per-tag average
precision (multilabel) and predicted against true (regression). Built with matplotlib's object API (no pyplot state), each sized for the
number of front-ends it shows, with constrained layout so that titles, legends and labels stay
inside it (tests/test_figures.py renders each for one, two and eleven front-ends). A classifier
has one colour in every figure (``classifier_colour``), and the metric's axes carry the chance line
where chance is known (kinds.chance: 1/classes, a constant scorer's mAP, R² 0). Axes are labelled
with the kind's metric (kinds.Metric): accuracy and mAP in %, R² as it is."""

from __future__ import annotations

import textwrap
import zlib

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.transforms import Bbox

from . import kinds
from .kinds import Chance, as_chance
from .stats import ALPHA, metric_of

GROUPS = ("waveform", "spectrogram", "baseline", "imported", "unknown")
# one colour per classifier in every figure (bars, cost, per class); red and grey are left to
# significance, black to the chance line
CLASSIFIER_COLOURS = {"svm": "#1f77b4", "elm": "#ff7f0e", "trained": "#2ca02c", "knn": "#9467bd", "linear": "#17becf",
                      "mlp": "#8c564b"}  # fmt: skip
OTHER_COLOURS = ("#e377c2", "#bcbd22", "#393b79", "#637939")
SIZES = ("small", "large")


def classifier_colour(classifier: str) -> str:
    """The classifier's colour; one outside CLASSIFIER_COLOURS gets one chosen by its name
    alone, so that it too keeps its colour from figure to figure and run to run."""
    name = classifier.lower()
    return CLASSIFIER_COLOURS.get(name) or OTHER_COLOURS[zlib.crc32(name.encode()) % len(OTHER_COLOURS)]


def classifier_order(classifiers) -> list[str]:
    """The classifiers in CLASSIFIER_COLOURS's order, any other after them by name: the same
    order in every legend."""
    known = list(CLASSIFIER_COLOURS)
    return sorted(set(classifiers), key=lambda c: (known.index(c) if c in known else len(known), c))


def class_count(best: pd.DataFrame) -> int | None:
    """The number of classes the runs were scored on (the labels of their
    ``class_accuracy/<label>`` metrics), or None where no run logged them."""
    if "class_accuracy" not in best:
        return None
    labels = set().union(*(set(d) for d in best["class_accuracy"] if isinstance(d, dict)))
    return len(labels) or None


def chance_line(ax: Axes, chance: Chance | int | None, scale: float = 100.0) -> None:
    """A dashed line at chance (``chance``: a kinds.Chance, or a number of classes): for
    multiclass 100/n_classes %, what guessing a class uniformly at random scores (a
    majority-class guess scores more where the classes are unbalanced); multilabel, the mAP of a
    constant scorer; regression, R² 0."""
    chance = as_chance(chance)
    if chance is not None:
        ax.axhline(scale * chance.value, color="black", ls="--", lw=1, zorder=1, label=chance.label)


def legend(ax: Axes) -> None:
    """The classifiers' colours, then the chance line, outside the axes on the right."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("chance"))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], title="classifier", loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)  # fmt: skip


def group_rank(kind: str) -> int:
    return GROUPS.index(kind) if kind in GROUPS else len(GROUPS)


def frontend_order(summary: pd.DataFrame) -> list[str]:
    """Front-ends grouped by input (waveform, spectrogram, the MFCC baseline, then imported models
    and vectors), by name within."""
    kinds = summary.drop_duplicates("frontend").set_index("frontend")["input"]
    return sorted(kinds.index, key=lambda fe: (group_rank(kinds[fe]), fe))


def ranked_order(summary: pd.DataFrame) -> list[str]:
    """Front-ends grouped by input as in ``frontend_order``, best first within each group (by
    the front-end's best cell, whichever the classifier)."""
    kinds = summary.drop_duplicates("frontend").set_index("frontend")["input"]
    top = summary.groupby("frontend")["mean"].max()
    return sorted(kinds.index, key=lambda fe: (group_rank(kinds[fe]), -top[fe], fe))


# The most characters a tick, a point label or a legend entry shows of a name
LABEL_CHARS = 30


def short(name: object, most: int = LABEL_CHARS) -> str:
    """``name`` as one line of at most ``most`` characters, for a tick, a point label or a legend
    entry: white space (line breaks too) collapsed and, where longer, its start and its end
    around an ellipsis. A long name (an imported front-end's path, a forged tag) took the figure's
    whole width and collapsed its axes; the end is kept because such names often differ there
    (model_a.py, model_b.py). The tables keep names whole."""
    text = " ".join(str(name).split())
    if len(text) <= most:
        return text
    head = 2 * (most - 1) // 3
    return text[:head] + "…" + text[len(text) - (most - 1 - head) :]


def label_room(labels: list[str]) -> float:
    """Inches to add to a figure for tick labels longer than the built-in front-ends' names
    (timbral_temporal's 16 characters), so that they do not take the axes' room."""
    return 0.07 * max(0, max(map(len, labels), default=0) - 16)


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


def spread_labels(fig: Figure) -> None:
    """Moves the point labels of every axes (its annotations) to the other side of their point,
    or up or down by whole label heights, until none overlaps another label or a point and each
    lies inside its axes; a label moved off its point's height gets a grey leader line.
    Measured on the figure as laid out, so it runs last; the labels then stay out of the
    layout, which they no longer change."""
    for ax in fig.axes:
        for label in ax.texts:
            label.set_in_layout(False)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.texts if isinstance(t, Annotation)]
        frame = ax.get_window_extent(renderer)
        points = [ax.transData.transform(c.get_offsets()) for c in ax.collections if len(c.get_offsets())]
        taken = [Bbox.from_bounds(px - 3, py - 3, 6, 6) for xy in points for px, py in xy]
        for label in sorted(labels, key=lambda t: ax.transData.transform(t.xy)[1]):
            box = label.get_window_extent(renderer)
            dx, dy = label.xyann
            swap = -(box.width + 2 * abs(dx) * fig.dpi / 72) * (1 if label.get_ha() == "left" else -1)  # to the other side
            tries = [(k * sign, side) for k in range(12) for sign in ((1, -1) if k else (1,)) for side in (False, True)]
            fits = [(k, side) for k, side in tries if _free(box.translated(swap if side else 0, k * box.height), frame, taken)]
            k, side = fits[0] if fits else (0, False)
            taken.append(box.translated(swap if side else 0, k * box.height))
            if k or side:
                ha = {"left": "right", "right": "left"}[label.get_ha()] if side else label.get_ha()
                leader = {"arrowprops": {"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkA": 0, "shrinkB": 3}} if k else {}
                ax.annotate(label.get_text(), label.xy, xytext=(-dx if side else dx, dy + k * box.height * 72 / fig.dpi),
                            textcoords="offset points", fontsize=label.get_fontsize(), ha=ha, va=label.get_va(),
                            **leader).set_in_layout(False)  # fmt: skip
                label.remove()


def _free(box: Bbox, frame: Bbox, taken: list[Bbox]) -> bool:
    inside = box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
    return inside and not any(box.overlaps(t) for t in taken)


def decades(value: float, _position: float) -> str:
    """A log axis's tick as a plain number (0.01, 1, 100): no mathtext, which the report turns
    off (a '$' in a front-end's name must not open a formula)."""
    return f"{value:g}"


def value_limits(metric: kinds.Metric, values) -> tuple[float, float]:
    """An axis's limits for ``metric``, as drawn (scaled): its range where it has one (0 to
    100%); R²: up to 1, down to 0 or below the lowest value shown."""
    low = metric.low
    if low is None:
        shown = np.asarray(values, dtype=float)
        shown = shown[np.isfinite(shown)]
        low = min(0.0, float(shown.min()) - 0.05) if len(shown) else 0.0
    return metric.scale * low, metric.scale * (metric.high if metric.high is not None else 1.0)


def bars(summary: pd.DataFrame, feature_size: str, title: str, n_classes: Chance | int | None = None,
         metric: kinds.Metric | None = None) -> Figure:  # fmt: skip
    """Mean test score per front-end (the primary metric: ``metric``, else the summary's),
    a bar per classifier in its colour; front-ends grouped by input, best first within each
    group; error bars: the cell's 95% interval as the table gives it, within the metric's range
    (0 to 100%; R² at most 1); the chance line where ``n_classes`` (a number of classes, or a
    kinds.Chance) is given."""
    metric = metric or metric_of(summary)
    k = metric.scale
    part = summary[summary["feature_size"] == feature_size]
    order = ranked_order(part)
    kinds = part.drop_duplicates("frontend").set_index("frontend")["input"]
    classifiers = classifier_order(part["classifier"])
    x, pos, last = [], 0.0, None
    for fe in order:
        if last is not None and kinds[fe] != last:
            pos += 0.6
        x.append(pos)
        pos += 1.0
        last = kinds[fe]
    width = 0.8 / max(len(classifiers), 1)
    labels = [short(fe) for fe in order]
    fig = Figure(figsize=(max(6.0, 0.75 * len(order) + 3.0), 4.6 + label_room(labels)), layout="constrained")
    ax = fig.subplots()
    for i, clf in enumerate(classifiers):
        rows = part[part["classifier"] == clf].set_index("frontend").reindex(order)
        mean = k * rows["mean"].to_numpy(dtype=float)
        low = k * metric.clip(rows["ci_low"].to_numpy(dtype=float)) if "ci_low" in rows else np.full_like(mean, np.nan)
        high = k * metric.clip(rows["ci_high"].to_numpy(dtype=float)) if "ci_high" in rows else np.full_like(mean, np.nan)
        yerr = np.nan_to_num(np.vstack([mean - low, high - mean]).clip(min=0))
        ax.bar(np.array(x) + (i - (len(classifiers) - 1) / 2) * width, mean, width, yerr=yerr, capsize=3,
               color=classifier_colour(clf), label=clf.upper(), error_kw={"elinewidth": 1})  # fmt: skip
    chance_line(ax, n_classes, k)
    ax.set_xticks(x, labels, rotation=35, ha="right")
    ax.set_xlim(min(x[0] - 0.7, (x[0] + x[-1]) / 2 - 2), max(x[-1] + 0.7, (x[0] + x[-1]) / 2 + 2))  # no bar wider than a slot
    groups = list(dict.fromkeys(kinds[order]))
    where = {kind: [xi for xi, fe in zip(x, order) if kinds[fe] == kind] for kind in groups}
    top = ax.secondary_xaxis("top")  # the input groups' names above the axes, placed by the layout
    top.set_xticks([np.mean(where[kind]) for kind in groups], groups, fontsize=9, color="0.35")
    top.tick_params(length=0, pad=3)
    for kind in groups[1:]:
        ax.axvline(min(where[kind]) - 0.8, color="0.8", lw=0.8, zorder=0)
    ax.set_ylim(*value_limits(metric, [*part["mean"], *(part["ci_low"] if "ci_low" in part else [])]))
    ax.set_ylabel(metric.axis())
    ax.set_xlabel(wrapped("front-ends grouped by input, best first within each group\nerror bars: 95% interval of the mean "
                          "over folds and seeds (as in table.md)", fig.get_figwidth() - 0.5, 8), fontsize=8, color="0.3")  # fmt: skip
    ax.set_title(wrapped(title, fig.get_figwidth() - 1.5, 11))
    legend(ax)
    return fig


def points(value: float, digits: int = 1) -> str:
    """A difference in points, one decimal (``digits``), signed; never "-0.0"."""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (relative luminance,
    WCAG 2)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if luminance > 0.179 else "white"


def stars(p: float) -> str:
    """* below 0.05, ** below 0.01, *** below 0.001."""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < ALPHA else ""


FLOOR_P = 1e-4  # the colour scale's darkest red: this p and below
# red for the pairs the test separates (darker: smaller p), pale grey for those it cannot
SIGNIFICANCE_COLOURS = ListedColormap(
    np.vstack([colormaps["Reds"](np.linspace(0.95, 0.35, 128)), colormaps["Greys"](np.linspace(0.22, 0.08, 128))])
)


def significance(pairs: pd.DataFrame, order: list[str], title: str, metric: kinds.Metric = kinds.ACCURACY) -> Figure:
    """Holm-corrected p-values of the pairs' tests (corrected resampled t, McNemar or the paired
    bootstrap), and the difference row - column in points (of ``metric``; R² as it is): the
    sign says which row is better. The colour scale
    (log p) turns at 0.05: red, darker as p falls, where the test separates the pair; pale
    grey where it cannot, so that what stands out is a difference, not its absence."""
    n = len(order)
    matrix = np.full((n, n), np.nan)
    diffs = np.full((n, n), np.nan)
    idx = {fe: i for i, fe in enumerate(order)}
    for _, r in pairs.iterrows():
        i, j = idx[r["a"]], idx[r["b"]]
        matrix[i, j] = matrix[j, i] = r["p_holm"]
        diffs[i, j], diffs[j, i] = r["mean_diff"], -r["mean_diff"]
    cell = 0.72
    labels = [short(fe) for fe in order]
    room = label_room(labels)
    fig = Figure(figsize=(max(5.2, 2.6 + cell * n) + room, max(4.2, 2.2 + cell * n) + room), layout="constrained")
    ax = fig.subplots()
    cmap, norm = SIGNIFICANCE_COLOURS, TwoSlopeNorm(np.log10(ALPHA), np.log10(FLOOR_P), 0.0)
    image = ax.imshow(np.log10(np.clip(matrix, FLOOR_P, 1)), norm=norm, cmap=cmap)
    for i in range(n):
        for j in range(n):
            if not np.isnan(matrix[i, j]):
                p = matrix[i, j]
                ax.text(j, i, f"{p_text(p)}{stars(p)}\n{points(metric.scale * diffs[i, j], metric.digits)}", ha="center", va="center", fontsize=7,
                        fontweight="bold" if p < ALPHA else "normal", color=text_colour(cmap(norm(np.log10(max(p, FLOOR_P))))))  # fmt: skip
    ax.set_xticks(range(n), labels, rotation=40, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel(wrapped(f"cell: Holm-corrected p, * below {ALPHA}, ** 0.01, *** 0.001 (red: the test tells the pair apart; "
                          f"grey: it cannot), then row - column {'in points' if metric.percent else '(' + metric.label + ')'}",
                          fig.get_figwidth() - 1.0, 8),
                  fontsize=8, color="0.3")  # fmt: skip
    ax.set_title(wrapped(title, fig.get_figwidth() - 1.2, 9), fontsize=9)
    ticks = (FLOOR_P, 0.001, 0.01, ALPHA, 0.2, 1.0)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, label="Holm-corrected p (log scale)")
    bar.set_ticks(np.log10(ticks), labels=[f"≤{FLOOR_P:g}" if p == FLOOR_P else f"{p:g}" for p in ticks])
    return fig


def cost(summary: pd.DataFrame, title: str, n_classes: Chance | int | None = None, metric: kinds.Metric | None = None) -> Figure:
    """Mean test score (the primary metric, from 0%; R² from 0 or below) against GFLOP per clip (log scale, whole decades around
    the data): a panel per feature size on the same axes, a colour per classifier, every point
    named by its front-end; the chance line where ``n_classes`` is given; the legend outside
    the axes."""
    metric = metric or metric_of(summary)
    k = metric.scale
    sizes = sorted(summary["feature_size"].unique(), key=lambda s: (SIZES.index(s) if s in SIZES else len(SIZES), s))
    many = summary["frontend"].nunique() > 4
    fig = Figure(figsize=(1.8 + (5.2 if many else 4.4) * len(sizes), 6.0 if many else 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sizes), sharex=True, sharey=True))
    costed = summary["gflops_per_clip"].to_numpy(dtype=float)
    costed = costed[np.isfinite(costed) & (costed > 0)]
    low, high = (np.floor(np.log10(costed.min())), np.ceil(np.log10(costed.max()))) if len(costed) else (-1.0, 1.0)
    if high - low < 2:  # at least two decades: one cost alone sits in the middle
        low, high = (low - 1, high + 1) if high == low else (low, high + 1)
    for ax, size in zip(axes, sizes):
        part = summary[summary["feature_size"] == size]
        shown = part[np.isfinite(part["gflops_per_clip"]) & (part["gflops_per_clip"] > 0)]
        for clf in classifier_order(part["classifier"]):
            mine = shown[shown["classifier"] == clf]
            ax.scatter(mine["gflops_per_clip"], k * mine["mean"], color=classifier_colour(clf), s=28, label=clf.upper(), zorder=3)
        names = [short(r["frontend"]) + ("" if r.get("experiment", "default") == "default" else f" ({short(r['experiment'])})") for _, r in shown.iterrows()]
        if len(shown):
            label_points(ax, shown["gflops_per_clip"], k * shown["mean"], names, log_x=True)
        chance_line(ax, n_classes, k)
        unknown = sorted(set(part["frontend"]) - set(shown["frontend"]))
        if unknown:
            ax.text(0.02, 0.02, wrapped("no cost known, not shown: " + ", ".join(unknown), 3.0, 7), transform=ax.transAxes,
                    fontsize=7, color="0.3", va="bottom")  # fmt: skip
        ax.set_title(f"feature size {size}", fontsize=9)
        ax.set_xlabel("GFLOP per clip (forward pass, log scale)")
    axes[0].set_xscale("log")
    axes[0].set_xlim(10**low, 10**high)
    axes[0].xaxis.set_major_formatter(FuncFormatter(decades))
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylim(*value_limits(metric, summary["mean"]))
    axes[0].set_ylabel(metric.axis())
    fig.suptitle(wrapped(title, fig.get_figwidth() - 2.0, 11), fontsize=11)
    legend(axes[-1])
    spread_labels(fig)
    return fig


def tag_ap(table: pd.DataFrame, title: str, prevalence: pd.Series | None = None) -> Figure:
    """Multilabel, in place of the confusion matrix and the per-class panels: each tag's
    average precision (%) for the cell of ``table``'s first column (its best; tags x cells,
    as sections.tag_table), a bar per tag sorted best first; the other columns' AP as diamonds
    in their classifier's colour (the runner-up front-ends); with ``prevalence`` (tag
    -> share of positive test clips), a black tick at each tag's chance AP."""
    first = table.columns[0]
    order = table[first].sort_values(ascending=False).index
    n = len(order)
    fig = Figure(figsize=(7.2, 1.6 + 0.24 * n), layout="constrained")
    ax = fig.subplots()
    y = np.arange(n)
    clf = str(first).rsplit(" · ", 1)[-1]
    ax.barh(y, 100 * table.loc[order, first].to_numpy(dtype=float), color=classifier_colour(clf), alpha=0.45, label=short(first, 2 * LABEL_CHARS))
    for column in table.columns[1:]:  # a dark-edged diamond: it reads on a bar of its own colour too
        colour = classifier_colour(str(column).rsplit(" · ", 1)[-1])
        ax.plot(100 * table.loc[order, column].to_numpy(dtype=float), y, "D", mfc=colour, mec="0.15", ms=5, ls="", label=short(column, 2 * LABEL_CHARS))
    if prevalence is not None:
        known = prevalence.reindex(order).to_numpy(dtype=float)
        ax.plot(100 * known, y, "|", color="black", ms=9, mew=1.5, label="chance: the tag's prevalence")
    ax.set_yticks(y, [short(t) for t in order], fontsize=7)
    ax.invert_yaxis()  # best at the top
    ax.set_xlim(0, 100)
    ax.set_xlabel("test average precision (%)")
    ax.grid(axis="x", color="0.9", lw=0.6)
    ax.set_title(wrapped(title, fig.get_figwidth() - 1.0, 10), fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return fig


def predicted_against_true(panels: list[tuple[str, np.ndarray, np.ndarray, float]], title: str) -> Figure:
    """Regression, in place of the confusion matrix: per front-end (``panels``: name, targets,
    predictions, its R²) the predictions of its test clips against their targets, on the same
    axes for every panel, with the diagonal where they would be equal."""
    n = len(panels)
    cols = min(3, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.0 + 3.2 * cols, 0.9 + 3.0 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    everything = np.concatenate([np.r_[t, p] for _, t, p, _ in panels]) if panels else np.zeros(1)
    everything = everything[np.isfinite(everything)]
    low, high = (float(everything.min()), float(everything.max())) if len(everything) else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    low, high = low - pad, high + pad
    for ax, (name, truth, predicted, r2) in zip(axes, panels):
        ax.plot([low, high], [low, high], "--", color="0.6", lw=1, zorder=1)
        ax.scatter(truth, predicted, s=8, alpha=0.6, color="#1f77b4", zorder=2, edgecolors="none")
        ax.set_title(wrapped(f"{name}\nR² {r2:.3f} ({len(truth)} test clips)", 3.0, 8), fontsize=8)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal", adjustable="box")
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[max(0, n - cols) : n]:  # the lowest panel of each column: its ticks and label
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("true target", fontsize=8)
    for ax in axes[::cols][:rows]:
        ax.set_ylabel("predicted", fontsize=8)
    fig.suptitle(wrapped(title, fig.get_figwidth() - 0.5, 10), fontsize=10)
    return fig
