"""The report on a store colleagues can write to (shared servers, round two): nothing read from
MLflow becomes a path unchecked, and what a run says reaches table.md as text and within its
range. Each test forges runs as a colleague could, through MLflow's client, beside genuine ones,
and runs ``python -m elm_audio.report`` in this process."""

from __future__ import annotations

import itertools

import pandas as pd
from helpers.reports import FOLDS, cells, logged_run, report, section, store


def comparison(md: str) -> list[list[str]]:
    """table.md's comparison, header first: every line between the answer (a bullet per column,
    after the title) and the notes must be a row of it, with as many cells as the header."""
    lines = [line for line in md.split("\n## Notes")[0].split("\n")[1:] if line.strip()]
    lines = list(itertools.dropwhile(lambda line: line.startswith("- "), lines))
    assert all(line.startswith("|") for line in lines), lines
    rows = [cells(line) for line in lines]
    assert all(len(r) == len(rows[0]) for r in rows), rows
    return [rows[0], *rows[2:]]  # the delimiter row left out


def printed_line(printed: str, run_id: str) -> str:
    """The one printed line that names the run."""
    (line,) = [line for line in printed.splitlines() if run_id in line]
    return line


def test_a_features_key_or_run_id_leading_out_of_the_cache_moves_nothing_and_is_named(tmp_path):
    """features_key=../victim (beside the cache) or an absolute path, features_run_id=../..: the
    CKA section took the key for a cache entry's folder, found no entry there and moved the
    folder into the cache as damaged. The runs keep their accuracies in the table."""
    client, experiment = store(tmp_path)
    (tmp_path / "cache").mkdir()
    victims = [tmp_path / "victim", tmp_path / "elsewhere" / "victim"]
    for victim in victims:
        victim.mkdir(parents=True)
        (victim / "precious.txt").write_text("keep me")
    for frontend in ("temporal", "mfcc"):
        logged_run(client, experiment, frontend)
    forged = {
        logged_run(client, experiment, "vgg", tags={"features_key": "../victim"}): "tag features_key='../victim' is not a feature",
        logged_run(client, experiment, "cnn_7x96", tags={"features_key": str(victims[1])}): "is not a feature cache key",
        logged_run(client, experiment, "timbral", tags={"features_run_id": "../../victim"}): "features_run_id='../../victim' is not an",
    }
    code, printed = report(tmp_path)
    assert code == 0, printed
    assert all((victim / "precious.txt").read_text() == "keep me" for victim in victims)
    assert not list((tmp_path / "cache").iterdir())  # nothing was moved into the cache
    md = (tmp_path / "reports" / "synth" / "table.md").read_text()
    assert sorted(row[0] for row in comparison(md)[1:]) == ["cnn_7x96", "mfcc", "temporal", "timbral", "vgg"]
    for run_id, why in forged.items():
        line = printed_line(printed, run_id)
        assert why in line and "left out of the CKA map" in line, line
        assert run_id in section(md, "Left out")


def test_a_dataset_or_a_tag_naming_a_path_outside_the_report_writes_nothing_there_and_is_named(tmp_path):
    """An experiment elm_audio/../outside made the report write its folder beside --out; a run
    tagged experiment=../../outside named files with it, and the report stopped."""
    client, experiment = store(tmp_path)
    logged_run(client, experiment, "temporal")
    forged = logged_run(client, experiment, "mfcc", tags={"experiment": "../../outside"})
    _, outside = store(tmp_path, "../outside")
    logged_run(client, outside, "temporal")
    code, printed = report(tmp_path)
    assert code == 0, printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlruns", "reports"]
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["synth"]
    line = printed_line(printed, "elm_audio/../outside")
    assert "'../outside' is not a dataset name" in line and "rename the experiment" in line, line
    assert "tag experiment='../../outside' is not a name" in printed_line(printed, forged)
    md = (tmp_path / "reports" / "synth" / "table.md").read_text()
    assert forged in section(md, "Left out") and [row[0] for row in comparison(md)[1:]] == ["temporal"]


INJECTED = "fake | row\n| injected | row |\n<img src=x onerror=alert(1)> `code` [link](http://x) $\\oops$"


def test_markup_in_a_tag_stays_the_text_of_its_one_cell(tmp_path):
    """A front-end tag with pipes, line breaks, HTML, a code span, a link and mathtext added rows
    and markup to table.md (and mathtext stopped the figures); a classifier tag, which names
    files, with markup leaves its run out."""
    client, experiment = store(tmp_path)
    for frontend in ("temporal", "mfcc", INJECTED):
        logged_run(client, experiment, frontend)
    forged = logged_run(client, experiment, "vgg", tags={"classifier": "svm <b>x</b>"})
    code, printed = report(tmp_path)
    assert code == 0, printed
    md = (tmp_path / "reports" / "synth" / "table.md").read_text()
    rows = comparison(md)  # every line a row, each with the header's cells
    assert len(rows) == 1 + 3
    (row,) = [r for r in rows if "fake" in r[0]]
    assert row[0] == r"fake \| row \| injected \| row \| &lt;img src=x onerror=alert(1)> \`code\` [link]\(http://x) $\\oops$"
    for raw in ("<img", "<b>", "`code`", "](http", "\n| injected"):
        assert raw not in md
    assert "\n| injected" not in printed  # the terminal's notes: one line each too
    assert "tag classifier='svm <b>x</b>' is not a name" in printed_line(printed, forged)
    assert forged in section(md, "Left out")


def test_a_metric_outside_its_range_leaves_the_run_out_and_names_it(tmp_path):
    """Accuracies of 5.0 (500%) or -0.5 and an infinite cost, in runs that would be chosen (a
    better val_accuracy, or a cell of their own): the table showed them."""
    client, experiment = store(tmp_path)
    for frontend in ("temporal", "mfcc"):
        logged_run(client, experiment, frontend)
    best = {"val_accuracy": 0.99}
    forged = {
        logged_run(client, experiment, "temporal", metrics={**best, "test_accuracy": 5.0, **dict.fromkeys(FOLDS, 5.0)}): "test_accuracy",
        logged_run(client, experiment, "mfcc", metrics={**best, "fold2_test_accuracy": 5.0}): "fold2_test_accuracy",
        logged_run(client, experiment, "temporal", seed=2, metrics={"knn_accuracy": -0.5}): "knn_accuracy",
        logged_run(client, experiment, "temporal", seed=3, metrics={"class_accuracy/noise": 5.0}): "class_accuracy/noise",
        logged_run(client, experiment, "mfcc", seed=2, metrics={"gflops_per_clip": float("inf")}): "gflops_per_clip is not finite",
    }
    code, printed = report(tmp_path)
    assert code == 0, printed
    folder = tmp_path / "reports" / "synth"
    md = (folder / "table.md").read_text()
    for run_id, why in forged.items():
        line = printed_line(printed, run_id)
        assert line.startswith(f"  left out: run {run_id}") and why in line, line
        assert run_id in section(md, "Left out")
    assert set(pd.read_csv(folder / "left_out.csv")["run_id"]) == set(forged)
    header, *rows = comparison(md)
    cell = header.index("small · svm")
    assert sorted(row[0] for row in rows) == ["mfcc", "temporal"] and all(row[cell].startswith("80.0 [") for row in rows)
    for forged_number in ("500.0", "216.7", "-50.0", "179,769"):  # 5.0, (0.8 + 5 + 0.7) / 3, -0.5, inf
        assert forged_number not in md and forged_number not in printed
    assert (pd.read_csv(folder / "table.csv")["mean"] <= 1).all()


def test_a_seed_param_that_is_no_seed_leaves_its_run_out_instead_of_stopping_the_report(tmp_path):
    """seed=1.5 stopped the report with pandas' cast error, for every dataset after it."""
    client, experiment = store(tmp_path)
    logged_run(client, experiment, "temporal")
    forged = logged_run(client, experiment, "mfcc", params={"seed": "1.5"})
    code, printed = report(tmp_path)
    assert code == 0, printed
    assert "param seed='1.5' is not a seed" in printed_line(printed, forged)
