"""What a researcher reads first in the report (round three): the answer, then the table, the
method once at the end. A store of twelve cells (three front-ends x two sizes x two classifiers,
three folds, a run each: runs are what makes such a store slow) is written through MLflow's
client, as elm_audio's runs log it, and the report runs in this process; the expected answer is
worked out here from the logged metrics."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from helpers.reports import cells, logged_run, report, store
from scipy import stats

FRONTENDS = {"temporal": 0.80, "vgg": 0.72, "cnn_7x96": 0.64}  # each front-end's accuracy, before noise
COLUMNS = [(size, clf) for size in ("small", "large") for clf in ("elm", "svm")]  # the table's order
LINES_BEFORE = 57  # table.md's lines for this store before the answer came first (measured)


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> tuple[str, str, dict]:
    """table.md, what the report printed, and the fold accuracies logged: (size, classifier) ->
    front-end -> seeds x folds. The small columns' folds spread little (their leads are
    significant), the large ones' much (one lead clears 0.05 alone, not once Holm counts the
    three pairs; the other not at all)."""
    cwd = tmp_path_factory.mktemp("report_text")
    client, experiment = store(cwd)
    rng = np.random.default_rng(0)
    logged = {}
    for (size, clf), (fe, base) in itertools.product(COLUMNS, FRONTENDS.items()):
        accuracies = np.clip(base + rng.normal(0, 0.01 if size == "small" else 0.04, size=(1, 3)), 0, 1)
        logged.setdefault((size, clf), {})[fe] = accuracies
        for seed, folds in enumerate(accuracies, start=1):
            metrics = {"test_accuracy": folds.mean(), **{f"fold{k}_test_accuracy": v for k, v in enumerate(folds, start=1)}}
            logged_run(client, experiment, fe, seed, tags={"feature_size": size, "classifier": clf}, metrics=metrics)
    code, printed = report(cwd)
    assert code == 0, printed
    return (cwd / "reports" / "synth" / "table.md").read_text(), printed, logged


def expected_answer(column: dict[str, np.ndarray]) -> dict:
    """The column's best front-end and runner-up by mean accuracy, the lead in points, and the
    corrected resampled t-test of the two (Nadeau & Bengio: per fold the mean over seeds; the
    honest protocol's 3 folds test on one and train on one, n_test/n_train = 1), Holm-corrected
    over the column's three pairs."""
    means = {fe: a.mean() for fe, a in column.items()}
    first, second = sorted(means, key=means.get, reverse=True)[:2]
    p, interval = {}, {}
    for a, b in itertools.combinations(sorted(column), 2):
        d = column[a].mean(axis=0) - column[b].mean(axis=0)
        se = np.sqrt((1 / 3 + 1) * d.var(ddof=1))
        p[frozenset((a, b))] = 2 * stats.t.sf(abs(d.mean() / se), 2)
        interval[a, b] = d.mean() + np.array([-1, 1]) * stats.t.ppf(0.975, 2) * se
    order = sorted(p, key=p.get)
    holm = dict(zip(order, np.maximum.accumulate([min(1, (3 - i) * p[k]) for i, k in enumerate(order)])))
    low, high = interval[first, second] if (first, second) in interval else -interval[second, first][::-1]
    pair = frozenset((first, second))
    return {"first": first, "second": second, "means": (means[first], means[second]), "interval": (low, high),
            "p": p[pair], "holm": holm[pair]}  # fmt: skip


def comparison_rows(md: str) -> dict[str, list[str]]:
    """The comparison table's rows by front-end, the header's under ''."""
    rows = [cells(line) for line in md.split("\n## ")[0].splitlines() if line.startswith("|")]
    return {"" if i == 0 else r[0]: r for i, r in enumerate(rows) if i != 1}


def test_the_first_lines_name_each_columns_winner_its_lead_and_whether_it_is_significant(reported):
    md, printed, logged = reported
    first_lines = [line for line in md.splitlines() if line.strip() and not line.startswith("#")][: len(COLUMNS)]
    terminal = printed.splitlines()
    start = terminal.index("synth: 12 cell(s) compared") + 1
    rows = comparison_rows(md)
    verdicts = set()
    for (size, clf), line, said in zip(COLUMNS, first_lines, terminal[start : start + len(COLUMNS)]):
        e = expected_answer(logged[size, clf])
        a, b = (100 * m for m in e["means"])
        low, high = (100 * v for v in e["interval"])
        lead = f"{size} · {clf}: {e['first']} is best with {a:.1f}%, ahead of {e['second']} ({b:.1f}%) by {a - b:+.1f} points"
        assert line.startswith(f"- {lead} [{low:+.1f}, {high:+.1f}]; "), (line, lead)
        significant = e["holm"] < 0.05
        verdict = line.split("; ")[1]
        assert verdict.startswith("significant at the 5% level (" if significant else "not significant at the 5% level"), line
        assert ("once every pair is counted" in verdict) == (e["p"] < 0.05 <= e["holm"]), line
        assert f"p={e['p']:.3g}, Holm p={e['holm']:.3g} over 3 pairs" in verdict, line
        assert said.strip() == line.removeprefix("- ")  # the terminal leads with the same answer
        # the numbers the answer names are the table's
        column = rows[""].index(f"{size} · {clf}")
        assert rows[e["first"]][column].startswith(f"{a:.1f} [") and rows[e["second"]][column].startswith(f"{b:.1f} [")
        verdicts.add((significant, e["p"] < 0.05))
    assert verdicts == {(True, True), (False, True), (False, False)}  # the store shows every answer
    words = "\n".join(first_lines)
    assert not re.search(r"nan|None|np\.|\{'|\['", words), words  # no Python reprs
    assert not re.search(r"\. [a-z]", md), re.findall(r".{30}\. [a-z].{10}", md)  # a capital after a full stop


def test_the_method_is_explained_once_after_the_table(reported):
    md, printed, _ = reported
    assert md.count("Nadeau & Bengio") == md.count("(1/k + n_test/n_train) s^2") == md.count("Holm 1979") == 1
    method = md.split("\n## Method\n")[1]
    assert "\n## " not in method  # the last section
    assert "corrected resampled t-test over folds (Nadeau & Bengio 2003" in method
    assert "(1/k + n_test/n_train) s^2" in method and "Holm 1979" in method
    last_row = max(i for i, line in enumerate(md.splitlines()) if line.startswith("|"))
    assert md.splitlines().index("## Method") > last_row  # after the table, and after the table of pairs
    assert "Nadeau" not in printed and "n_test/n_train" not in printed  # the terminal names the test, table.md explains it


def test_a_twelve_cell_report_is_well_under_what_it_was(reported):
    """The same twelve cells took 57 lines when every column explained its test; the pairs are now
    one table, and sections with nothing to show one line each."""
    md, _, _ = reported
    assert md.count("\n") <= 0.8 * LINES_BEFORE, md
