"""The MLflow runs table a printed link opens: the scores as columns, best test accuracy first
(MLflow's shared view, an experiment tag its UI reads when the address names its key)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from helpers.runs import QUICK, local_uri, logged_runs, run_here, seed_empty_store
from mlflow.tracking import MlflowClient

from elm_audio.stores import tracking
from elm_audio.sweeps.parent import look_lines

VIEW_TAG = "mlflow.sharedViewState.elm_audio"


def test_a_run_tags_its_experiment_with_a_scored_view_and_its_browse_link_opens_it(tmp_path: Path) -> None:
    out, _ = run_here(tmp_path, *QUICK, "frontend=mfcc")
    client, (run,) = logged_runs(tmp_path)
    exp = client.get_experiment_by_name("elm_audio/synth")
    view = json.loads(exp.tags[VIEW_TAG])
    columns = view["selectedColumns"]
    assert columns[:2] == ["metrics.`test_accuracy`", "metrics.`val_accuracy`"]
    assert {"tags.`frontend`", "tags.`feature_size`", "tags.`classifier`"} <= set(columns)
    assert view["columnOrder"][0] == "metrics.`test_accuracy`"  # first, where no wide column pushes it out of sight
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`test_accuracy`", False)
    # every column is one the run has, spelled as the UI names it (kind.`key`)
    for kind, key in (re.fullmatch(r"(\w+)\.`(.+)`", c).groups() for c in columns):
        assert kind == "attributes" or key in {"metrics": run.data.metrics, "tags": run.data.tags}[kind], (kind, key)
    # the browse line opens the runs table on that view; the run's own page is printed too
    browse = next(line for line in out.splitlines() if line.startswith("  browse"))
    table = f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?viewStateShareKey=elm_audio&workflowType=machine_learning"
    assert browse.endswith(table) and f"--backend-store-uri {local_uri(tmp_path)}" in browse
    assert f"#/experiments/{exp.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning" in out


def test_an_experiment_without_this_versions_view_gets_it_and_one_with_it_is_left_alone(tmp_path: Path, monkeypatch) -> None:
    seed_empty_store(tmp_path)
    uri = local_uri(tmp_path)
    client = MlflowClient(uri)
    older = client.create_experiment("elm_audio/older")  # as made by a version without the view
    assert tracking.experiment_id("elm_audio/older", uri) == older
    assert client.get_experiment(older).tags[VIEW_TAG] == tracking.runs_view()
    client.set_experiment_tag(older, VIEW_TAG, '{"selectedColumns":[]}')  # an older version's
    tracking.experiment_id("elm_audio/older", uri)
    assert client.get_experiment(older).tags[VIEW_TAG] == tracking.runs_view()
    written = []
    monkeypatch.setattr(MlflowClient, "set_experiment_tag", lambda self, *args: written.append(args))
    tracking.experiment_id("elm_audio/older", uri)
    assert written == []


def test_a_sweeps_browse_link_opens_the_same_view_and_its_next_line_the_parent_run() -> None:
    sweep_run = SimpleNamespace(uri="http://user:secret@mlflow.example.org:5000/", experiment="7", run_id="abc123")
    browse, parent = look_lines(sweep_run, None, "study")  # type: ignore[arg-type]
    server = "http://user:***@mlflow.example.org:5000"
    assert browse == f"  browse       {server}/#/experiments/7/runs?viewStateShareKey=elm_audio&workflowType=machine_learning"
    assert parent == f"  parent run   {server}/#/experiments/7/runs/abc123?workflowType=machine_learning"
