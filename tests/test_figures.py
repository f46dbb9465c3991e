"""Every figure the tool writes, rendered for one, two and eleven front-ends from made-up
numbers (the figure functions take tables, so no run is needed): nothing drawn outside the
figure, legends clear of the data, annotations legible on their cells; then what each figure
must say, read from the figure object: the chance line, the bars' order, one colour per
classifier, labelled points, a significance scale that shows significance, a CKA scale that
shows the data's contrast, and titles that name what they show."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pandas as pd
import pytest
from helpers.frontends import LENGTHS
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.text import Annotation, Text

from elm_audio.report import classes, figures, similarity
from elm_audio.report.premise import Premise, tau_p_value
from elm_audio.report.premise import figure as premise_figure
from elm_audio.run.record import confusion_figure
from elm_audio.sweeps.parent import objective_figure

FRONTENDS = list(LENGTHS)  # the eleven
INPUT = {"sample_level": "waveform", "frame_level": "waveform", "frame_level_many": "waveform", "mfcc": "baseline"}


def summary_of(n: int, classifiers: tuple[str, ...] = ("svm", "elm")) -> pd.DataFrame:
    """A report's summary table for the first n front-ends, both sizes, SVM and ELM; one cell's
    interval reaches past 100% and one below 0%, as a t interval over few folds can."""
    rng = np.random.default_rng(n)
    rows = []
    for k, fe in enumerate(FRONTENDS[:n]):
        for size in ("small", "large"):
            gflops = 10 ** rng.uniform(-1, 2.5)  # a front-end's cost, whichever the classifier
            for clf in classifiers:
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


def similarity_of(n: int, seeds: bool = True) -> similarity.Similarity:
    """CKA between the first n front-ends, every value within 0.91 to 0.99 as on the built-in
    dataset, the shuffled controls, and with ``seeds`` a second seed of the first front-end."""
    fes = FRONTENDS[:n]
    rng = np.random.default_rng(n)
    values = 0.91 + 0.08 * rng.random((n, n))
    values = (values + values.T) / 2
    np.fill_diagonal(values, 1.0)
    matrix = pd.DataFrame(values, index=fes, columns=fes)
    row = {"ci_low": 0.0, "ci_high": 0.0, "n_clips": 180}
    rows = [{**row, "a": a, "b": b, "kind": "front-ends", "cka": matrix.loc[a, b]} for i, a in enumerate(fes) for b in fes[i + 1:]]
    rows += [{**row, "a": fe, "b": f"{fe}, clips shuffled", "kind": "shuffled", "cka": 0.002, "ci_low": -0.01, "ci_high": 0.02} for fe in fes]
    if seeds:
        rows.append({**row, "a": f"{fes[0]} seed 1", "b": f"{fes[0]} seed 2", "kind": "seeds", "cka": 0.99, "ci_low": 0.98, "ci_high": 1.0})
    pairs = pd.DataFrame(rows)
    pairs[["ci_low", "ci_high"]] = pairs[["ci_low", "ci_high"]].where(pairs["kind"] != "front-ends", pairs[["cka", "cka"]].to_numpy())
    return similarity.Similarity("small", "default", matrix, pairs, [])


def difference_of(n_classes: int, classifiers: tuple[str, ...] = ("svm", "elm")) -> classes.ClassDifference:
    """temporal · svm against timbral_temporal · elm, class by class, with the two front-ends'
    recall under every classifier; the first class differs after Holm's correction."""
    labels = [f"class {k}" for k in range(n_classes)]
    rng = np.random.default_rng(n_classes)
    diff = rng.uniform(-0.3, 0.3, n_classes)
    p = np.r_[0.001, rng.uniform(0.2, 1, n_classes - 1)]
    table = pd.DataFrame({"n": 30, "mean_diff": diff, "ci_low": diff - 0.1, "ci_high": diff + 0.1, "p": p,
                          "p_holm": np.minimum(1, p * n_classes)}, index=pd.Index(labels, name="class"))  # fmt: skip
    recall = pd.DataFrame({f"{fe} · {clf}": rng.uniform(0.2, 1, n_classes) for fe in ("temporal", "timbral_temporal")
                           for clf in classifiers}, index=labels)  # fmt: skip
    return classes.ClassDifference("temporal · svm", f"timbral_temporal · {classifiers[-1]}", table, recall)


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
    made = {f"bars_{size}": figures.bars(summary, size, f"extended_ballroom: feature size {size}, experiment=paper", 13)
            for size in ("small", "large")}  # fmt: skip
    made["cost"] = figures.cost(summary, "extended_ballroom: accuracy against cost", 13)
    made["premise"] = premise_figure(premise_of(n), "extended_ballroom: small, random against trained")
    made["objective"] = objective_of(n * 8)
    classes = ["Chacha", "Foxtrot", "Jive", "Pasodoble", "Quickstep", "Rumba", "Salsa", "Samba", "Slowwaltz",
               "Tango", "Viennesewaltz", "Waltz", "Wcswing"][: max(2, n + 2)]  # fmt: skip
    rng = np.random.default_rng(0)
    labels = rng.choice(classes, 200)
    made["confusion"] = confusion_figure(pd.DataFrame({"label": labels, "prediction": rng.choice(classes, 200)}), classes,
                                         "timbral_temporal (large, svm)", 0.5)  # fmt: skip
    made["classes"] = figures_classes(n)
    if n > 1:
        made["significance"] = figures.significance(pairs_of(order), order, title)
        for seeds in (True, False):
            made[f"cka, seeds {seeds}"] = similarity.figure(similarity_of(n, seeds), "extended_ballroom: large")
    return made


def figures_classes(n: int) -> Figure:
    return classes.figure(difference_of(max(2, n + 2)), "extended_ballroom: small, class by class")


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


def chance_lines(ax) -> list:
    return [line for line in ax.lines if line.get_label().startswith("chance")]


@pytest.mark.parametrize("n", [1, 11])
def test_the_accuracy_figures_draw_the_chance_line_at_one_over_the_classes(n):
    summary = summary_of(n)
    made = [figures.bars(summary, "small", "synth: feature size small", 6), figures.cost(summary, "synth: accuracy against cost", 6)]
    for fig in made:  # the bars' axes; each panel of the cost figure
        drawn(fig)
        for ax in fig.axes:
            (line,) = chance_lines(ax)
            assert np.allclose(line.get_ydata(), 100 / 6)
        (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        assert "chance: 1/6 classes" in [t.get_text() for t in legend.get_texts()]
    assert not chance_lines(figures.bars(summary, "small", "no class count known").axes[0])


def bar_means(ax) -> dict[str, list[float]]:
    """Per x tick (front-end), the heights of the bars around it."""
    ticks = dict(zip(ax.get_xticks(), (t.get_text() for t in ax.get_xticklabels())))
    heights: dict[str, list[float]] = {}
    for patch in ax.patches:
        centre = patch.get_x() + patch.get_width() / 2
        nearest = min(ticks, key=lambda x: abs(x - centre))
        heights.setdefault(ticks[nearest], []).append(patch.get_height())
    return heights


@pytest.mark.parametrize("n", [2, 11])
def test_the_bars_are_best_first_within_each_input_group_whose_name_sits_clear_of_the_axes(n):
    summary = summary_of(n)
    fig = figures.bars(summary, "small", "synth: feature size small")
    renderer = drawn(fig)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    kinds = summary.drop_duplicates("frontend").set_index("frontend")["input"]
    best = {fe: max(h) for fe, h in bar_means(ax).items()}
    for kind in set(kinds):
        mine = [fe for fe in names if kinds[fe] == kind]
        assert [best[fe] for fe in mine] == sorted((best[fe] for fe in mine), reverse=True), kind
    assert [kinds[fe] for fe in names] == sorted((kinds[fe] for fe in names), key=figures.GROUPS.index)
    frame = ax.get_window_extent(renderer)
    title = ax.title.get_window_extent(renderer)
    groups = [t for t in fig.findobj(Text) if t.get_text() in set(kinds) and t.get_visible()]
    assert {t.get_text() for t in groups} == set(kinds)
    for t in groups:  # above the frame by at least 2 points, below the title, inside the figure
        box = t.get_window_extent(renderer)
        assert box.y0 >= frame.y1 + 2 * fig.dpi / 72 and box.y1 <= title.y0 and fig.bbox.contains(box.x0, box.y0), t.get_text()


def colours_by_classifier(fig: Figure) -> dict[str, set[tuple]]:
    """Every classifier's colours as the figure's legends and artists give them."""
    found: dict[str, set[tuple]] = {}
    for ax in fig.axes:
        for container in ax.containers:  # bars
            if container.get_label() and not container.get_label().startswith("_"):
                found.setdefault(container.get_label().lower(), set()).update(to_rgba(p.get_facecolor()) for p in container.patches)
        for collection in ax.collections:  # scatter points
            if collection.get_label() and not collection.get_label().startswith("_"):
                found.setdefault(collection.get_label().lower(), set()).update(map(tuple, collection.get_facecolors()))
        if ax.get_title().lower() in figures.CLASSIFIER_COLOURS:  # a classifier's panel of the per-class figure
            found.setdefault(ax.get_title().lower(), set()).update(to_rgba(line.get_color()) for line in ax.lines)
    return found


def test_a_classifier_has_one_colour_in_every_figure():
    seen: dict[str, set[tuple]] = {}
    for clfs in [("svm", "elm"), ("elm",), ("trained", "elm", "svm"), ("knn", "elm")]:
        summary = summary_of(3, clfs)
        made = [figures.bars(summary, "large", "synth"), figures.cost(summary, "synth"), classes.figure(difference_of(4, clfs), "synth")]
        for fig in made:
            found = colours_by_classifier(fig)
            assert set(found) == set(clfs), (clfs, set(found))
            for clf, colours in found.items():
                seen.setdefault(clf, set()).update(colours)
    assert all(len(colours) == 1 for colours in seen.values()), seen
    assert len({next(iter(c)) for c in seen.values()}) == len(seen)  # and no two share one
    assert {clf: next(iter(c)) for clf, c in seen.items()} == {clf: to_rgba(figures.classifier_colour(clf)) for clf in seen}
    assert figures.classifier_colour("lda") == figures.classifier_colour("lda") not in {figures.classifier_colour(c) for c in seen}


@pytest.mark.parametrize("n", [1, 11])
def test_every_point_of_the_cost_figure_is_named_inside_axes_from_0_percent_and_whole_decades(n):
    summary = summary_of(n)
    with rc_context({"text.parse_math": False}):  # as the report draws it
        fig = figures.cost(summary, "synth: accuracy against cost")
        renderer = drawn(fig)
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 2  # a panel per feature size
    for ax in panels:
        size = ax.get_title().removeprefix("feature size ")
        points = {tuple(np.round(xy, 6)) for c in ax.collections for xy in c.get_offsets()}
        part = summary[summary["feature_size"] == size]
        assert points == {(round(r["gflops_per_clip"], 6), round(100 * r["mean"], 6)) for _, r in part.iterrows()}
        labels = [t for t in ax.texts if isinstance(t, Annotation)]
        assert len(labels) == len(part)
        named = {(tuple(np.round(t.xy, 6)), t.get_text()) for t in labels}
        assert named == {((round(r["gflops_per_clip"], 6), round(100 * r["mean"], 6)), r["frontend"]) for _, r in part.iterrows()}
        frame = ax.get_window_extent(renderer)
        for t in labels:
            box = t.get_window_extent(renderer)
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, t.get_text()
        assert ax.get_ylim() == (0, 100) and ax.get_xscale() == "log"
        low, high = np.log10(ax.get_xlim())
        assert low == np.floor(low) and high == np.ceil(high) and high - low >= 2
        assert 10**low <= summary["gflops_per_clip"].min() and summary["gflops_per_clip"].max() <= 10**high
        ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert ticks and all(float(t) > 0 for t in ticks)  # plain numbers, no formula the report would print raw


def significance_pairs(order: list[str]) -> pd.DataFrame:
    """Pairs whose Holm p-values run from below 0.001 to 1, the first four below 0.05."""
    ps = [0.0004, 0.004, 0.03, 0.049, 0.05, 0.3, 1.0]
    rows = [{"a": a, "b": b, "mean_diff": 0.05, "p_holm": ps[k % len(ps)]}
            for k, (a, b) in enumerate((a, b) for i, a in enumerate(order) for b in order[i + 1:])]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n", [2, 3, 11])
def test_the_significance_map_stars_significant_cells_and_mutes_the_rest(n):
    order = FRONTENDS[:n]
    pairs = significance_pairs(order)
    fig = figures.significance(pairs, order, "synth: small · svm")
    drawn(fig)
    ax = fig.axes[0]
    (image,) = ax.findobj(AxesImage)
    p = {frozenset((r["a"], r["b"])): r["p_holm"] for _, r in pairs.iterrows()}
    expected = {0.0004: "***", 0.004: "**", 0.03: "*", 0.049: "*"}
    for t in ax.texts:
        j, i = (int(v) for v in t.get_position())
        cell_p = p[frozenset((order[i], order[j]))]
        marks = t.get_text().split("\n")[0].removeprefix("<").lstrip("0123456789.")
        assert marks == expected.get(cell_p, ""), (cell_p, t.get_text())
        rgb = np.array(image.cmap(image.norm(image.get_array()[i, j]))[:3])
        if cell_p < 0.05:  # saturated
            assert rgb.max() - rgb.min() > 0.3, (cell_p, rgb)
        else:  # muted: pale grey
            assert rgb.max() - rgb.min() < 0.02 and rgb.min() > 0.7, (cell_p, rgb)
    scale = [image.cmap(image.norm(np.log10(q))) for q in (0.0004, 0.004, 0.03, 1.0)]
    luminance = [0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2] for c in scale]
    assert luminance == sorted(luminance)  # the smaller p, the darker; p = 1 the palest


@pytest.mark.parametrize("n", [3, 11])
def test_the_cka_colours_span_the_datas_range_and_the_colour_bar_says_so(n):
    s = similarity_of(n)
    fig = similarity.figure(s, "synth: small")
    drawn(fig)
    (image,) = fig.axes[0].findobj(AxesImage)
    off = s.matrix.to_numpy()[~np.eye(n, dtype=bool)]
    assert (image.norm.vmin, image.norm.vmax) == pytest.approx((off.min(), off.max()))
    bar = next(ax for ax in fig.axes if ax.get_ylabel().startswith("CKA"))
    assert bar.get_ylim() == pytest.approx((off.min(), off.max()))
    assert f"{off.min():.2f} to {off.max():.2f}" in bar.get_ylabel() and "not 0 to 1" in bar.get_ylabel()


def test_the_cka_controls_say_why_there_is_no_seed_control():
    one = similarity.figure(similarity_of(4, seeds=False), "synth: small")
    two = similarity.figure(similarity_of(4, seeds=True), "synth: small")
    for fig in (one, two):
        drawn(fig)

    def said(fig: Figure) -> str:
        return " ".join(t.get_text() for t in fig.axes[1].texts + [fig.axes[1].title]).replace("\n", " ")

    assert "no seed control" in said(one) and "second seed" in said(one) and "seed=1" in said(one)
    assert "another seed" not in said(one)
    assert "no seed control" not in said(two) and "another seed" in said(two)


def test_the_per_class_figure_gives_each_classifier_its_own_panel_and_colour():
    d = difference_of(6, ("svm", "elm"))
    fig = classes.figure(d, "synth: small, class by class")
    drawn(fig)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title() in ("SVM", "ELM")}
    assert set(panels) == {"SVM", "ELM"}
    for title, ax in panels.items():
        colour = to_rgba(figures.classifier_colour(title.lower()))
        assert {to_rgba(line.get_color()) for line in ax.lines} == {colour}
        for line in ax.lines:  # a front-end's recall under this classifier, class by class
            column = f"{line.get_label()} · {title.lower()}"
            expected = 100 * d.recall[column].reindex(d.table.sort_values("mean_diff").index)
            assert np.allclose(line.get_xdata(), expected)
    first = fig.axes[0]
    assert "temporal · svm" in first.get_xlabel() and "timbral_temporal · elm" in first.get_xlabel()
    assert [t.get_text() for t in first.get_yticklabels()].count("class 0 * (n=30)") == 1  # Holm p < 0.05


def test_the_confusion_matrix_is_titled_with_the_front_end_and_the_accuracy():
    labels = ["a", "b", "c"]
    predictions = pd.DataFrame({"label": ["a", "b", "c", "a"], "prediction": ["a", "b", "a", "a"]})
    fig = confusion_figure(predictions, labels, "timbral_temporal (small, svm)", 0.7512)
    title = fig.axes[0].get_title()
    assert "timbral_temporal (small, svm)" in title and "75.1%" in title and "4 test clips" in title


def test_long_front_end_names_keep_the_axes_and_stay_apart_on_one_line():
    """Two imported front-ends named by long paths that differ only at their end, one with a line
    break: their labels took the figures' room and collapsed the axes (matplotlib drew none). Each
    axes keeps at least 80% of the width and height (in inches) it has with the built-in names."""
    long_a = "imported:/home/someone/experiments/2026/models/pretrained_audio_model_a.py"
    long_b = "imported:/home/someone/experiments/2026/models/pretrained\naudio_model_b.py"

    def made(summary: pd.DataFrame) -> dict[str, Figure]:
        order = figures.frontend_order(summary)
        return {
            "bars": figures.bars(summary, "large", "synth: feature size large", 4),
            "cost": figures.cost(summary, "synth: accuracy against cost", 4),
            "significance": figures.significance(pairs_of(order), order, "synth: large · svm"),
        }

    def inches(fig: Figure) -> tuple[float, float]:
        box = fig.axes[0].get_position()
        return box.width * fig.get_figwidth(), box.height * fig.get_figheight()

    usual = {name: inches(fig) for name, fig in made(summary_of(3)).items() if drawn(fig)}
    renamed = summary_of(3).replace({"frontend": {FRONTENDS[0]: long_a, FRONTENDS[1]: long_b}})
    for name, fig in made(renamed).items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "constrained_layout not applied because axes sizes collapsed"
            drawn(fig)
        (width, height), (usual_width, usual_height) = inches(fig), usual[name]
        assert width >= 0.8 * usual_width and height >= 0.8 * usual_height, (name, inches(fig), usual[name])
        ax = fig.axes[0]
        texts = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() + ax.texts]
        mine = [t for t in texts if t.startswith("imported:")]
        assert len(mine) >= 2, (name, texts)
        for text in mine:
            assert "\n" not in text and len(text) <= figures.LABEL_CHARS, (name, text)
        assert any(t.endswith("model_a.py") for t in mine) and any(t.endswith("model_b.py") for t in mine), (name, mine)
