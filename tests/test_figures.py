"""Every figure the tool writes, rendered for one, two and eleven front-ends from made-up
numbers (the figure functions take tables, so no run is needed): nothing drawn outside the
figure, legends clear of the data, annotations legible on their cells."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import LENGTHS
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.text import Text

from elm_audio.record import confusion_figure
from elm_audio.report import figures
from elm_audio.report.premise import Premise, tau_p_value
from elm_audio.report.premise import figure as premise_figure
from elm_audio.sweeps import objective_figure

FRONTENDS = list(LENGTHS)  # the eleven
INPUT = {"sample_level": "waveform", "frame_level": "waveform", "frame_level_many": "waveform", "mfcc": "baseline"}


def summary_of(n: int) -> pd.DataFrame:
    """A report's summary table for the first n front-ends, both sizes, SVM and ELM; one cell's
    interval reaches past 100% and one below 0%, as a t interval over few folds can."""
    rng = np.random.default_rng(n)
    rows = []
    for k, fe in enumerate(FRONTENDS[:n]):
        for size in ("small", "large"):
            gflops = 10 ** rng.uniform(-1, 2.5)  # a front-end's cost, whichever the classifier
            for clf in ("svm", "elm"):
                mean = rng.uniform(0.3, 0.97)
                half = 0.2 if k == 0 else rng.uniform(0.01, 0.08)
                rows.append({"frontend": fe, "feature_size": size, "classifier": clf, "experiment": "default",
                             "mean": mean, "ci_low": 0.02 - half if k == 1 else mean - half, "ci_high": mean + half,
                             "std_folds": 0.03, "std_seeds": 0.01, "n_seeds": 3, "n_folds": 5, "n_runs": 3,
                             "gflops_per_clip": gflops, "extract_ms_per_clip": 50.0,
                             "input": INPUT.get(fe, "spectrogram")})  # fmt: skip
    return pd.DataFrame(rows)


def pairs_of(order: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(len(order))
    rows = [{"a": a, "b": b, "mean_diff": d, "p_holm": p}
            for i, a in enumerate(order) for b in order[i + 1:]
            for d, p in [(rng.choice([-0.0004, 0.0003, rng.uniform(-0.2, 0.2)]), rng.uniform(0, 1))]]  # fmt: skip
    return pd.DataFrame(rows, columns=["a", "b", "mean_diff", "p_holm"])


def premise_of(n: int) -> Premise:
    fes = FRONTENDS[:n]
    random = pd.Series(np.linspace(0.9, 0.4, n), index=fes)
    trained = random + 0.05
    ci = pd.DataFrame({"low": random - 0.03, "high": random + 0.03})
    return Premise("small", "default", fes, random, trained, {fe: "svm" for fe in fes}, 1.0, 1.0, (1.0, 1.0), (1.0, 1.0),
                   tau_p_value(random, trained) if n > 1 else 1.0, ci, ci + 0.05, 5)  # fmt: skip


def objective_of(n: int) -> Figure:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
    return objective_figure(study.trials)


def every_figure(n: int) -> dict[str, Figure]:
    summary = summary_of(n)
    order = figures.frontend_order(summary)
    title = "extended_ballroom: large · svm · reproduction (experiment=paper)"
    made = {f"bars_{size}": figures.bars(summary, size, f"extended_ballroom: feature size {size}, experiment=paper")
            for size in ("small", "large")}  # fmt: skip
    made["cost"] = figures.cost(summary, "extended_ballroom: accuracy against cost")
    made["premise"] = premise_figure(premise_of(n), "extended_ballroom: small, random against trained")
    made["objective"] = objective_of(n * 8)
    classes = ["Chacha", "Foxtrot", "Jive", "Pasodoble", "Quickstep", "Rumba", "Salsa", "Samba", "Slowwaltz",
               "Tango", "Viennesewaltz", "Waltz", "Wcswing"][: max(2, n + 2)]  # fmt: skip
    rng = np.random.default_rng(0)
    labels = rng.choice(classes, 200)
    made["confusion"] = confusion_figure(pd.DataFrame({"label": labels, "prediction": rng.choice(classes, 200)}), classes)
    if n > 1:
        made["significance"] = figures.significance(pairs_of(order), order, title)
    return made


def drawn(fig: Figure):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


@pytest.mark.parametrize("n", [1, 2, 11])
def test_every_figure_keeps_its_titles_legends_and_labels_inside_it(n):
    for name, fig in every_figure(n).items():
        renderer = drawn(fig)
        box = fig.bbox
        tight = fig.get_tightbbox(renderer)  # in inches: everything drawn, tick labels included
        page = fig.bbox_inches
        assert tight.x0 >= page.x0 - 0.01 and tight.y0 >= page.y0 - 0.01, f"{name} ({n}): {tight.bounds} vs {page.bounds}"
        assert tight.x1 <= page.x1 + 0.01 and tight.y1 <= page.y1 + 0.01, f"{name} ({n}): {tight.bounds} vs {page.bounds}"
        ticks = {id(t) for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in ticks]
        assert texts, name
        for t in texts:  # titles, axis labels, legends, annotations, one by one
            ext = t.get_window_extent(renderer)
            inside = ext.x0 >= box.x0 - 1 and ext.y0 >= box.y0 - 1 and ext.x1 <= box.x1 + 1 and ext.y1 <= box.y1 + 1
            assert inside, f"{name} ({n} front-ends): {t.get_text()!r} at {ext.bounds} is outside the figure {box.bounds}"
        for ax in fig.axes:
            if ax.get_title():
                assert ax.get_title() in {t.get_text() for t in texts}
        legends = [leg for ax in fig.axes if (leg := ax.get_legend()) is not None]
        for legend in legends:  # a legend sits on no data point and no point's label
            frame = legend.get_window_extent(renderer)
            ax = legend.axes
            for collection in ax.collections:
                for xy in collection.get_offsets():
                    px, py = ax.transData.transform(xy)
                    assert not (frame.x0 <= px <= frame.x1 and frame.y0 <= py <= frame.y1), f"{name}: the legend hides a point"
            for label in ax.texts:
                assert not frame.overlaps(label.get_window_extent(renderer)), f"{name}: the legend hides {label.get_text()!r}"


def contrast(a, b) -> float:
    def luminance(rgb) -> float:
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("n", [2, 11])
def test_the_significance_map_reads_on_every_cell_and_prints_no_negative_zero(n):
    from matplotlib.colors import to_rgba

    order = FRONTENDS[:n]
    fig = figures.significance(pairs_of(order), order, "synth: small · svm")
    drawn(fig)
    (image,) = fig.axes[0].findobj(AxesImage)
    cells = [t for t in fig.axes[0].texts]
    assert len(cells) == n * (n - 1)
    for t in cells:
        j, i = t.get_position()
        background = image.cmap(image.norm(image.get_array()[int(i), int(j)]))
        assert contrast(to_rgba(t.get_color()), background) >= 4.5, t.get_text()  # WCAG AA for small text
        assert "-0.0" not in t.get_text() and "+0.0" not in t.get_text()
    assert any(t.get_text().endswith("\n0.0") for t in cells)  # the tiny differences read 0.0


def test_the_bars_show_the_tables_interval_within_0_and_100_percent():
    summary = summary_of(2)
    fig = figures.bars(summary, "small", "synth: feature size small")
    drawn(fig)
    ax = fig.axes[0]
    segments = np.concatenate([c.get_segments() for c in ax.collections])
    ends = np.array([[s[:, 1].min(), s[:, 1].max()] for s in segments])
    assert ends.min() >= 0 and ends.max() <= 100
    part = summary[summary["feature_size"] == "small"]
    expected = sorted(100 * np.clip(np.concatenate([part["ci_low"], part["ci_high"]]), 0, 1))
    assert sorted(ends.ravel()) == pytest.approx(expected)
    assert "95% interval" in ax.get_xlabel() and ax.get_ylim() == (0, 100)


def test_the_objective_figure_numbers_trials_with_whole_numbers():
    fig = objective_of(3)
    drawn(fig)
    ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t <= fig.axes[0].get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
