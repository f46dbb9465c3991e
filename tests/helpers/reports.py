"""Report stores written by hand: runs logged through MLflow's client as elm_audio's runs log
them (store, logged_run), the report run on them in this process (report), and reading what it
wrote (cells of a Markdown row, a section of table.md)."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from elm_audio.stores import tracking
from helpers.runs import as_a_run_in, local_uri, seed_empty_store

FOLDS = {"fold1_test_accuracy": 0.8, "fold2_test_accuracy": 0.9, "fold3_test_accuracy": 0.7}
KEY = "0123456789abcdef0123"  # a features key's form; the cache holds no entry for it


def store(cwd: Path, dataset: str = "synth") -> tuple[MlflowClient, str]:
    """The store a run in ``cwd`` writes by default, and ``dataset``'s experiment in it."""
    seed_empty_store(cwd)
    uri = local_uri(cwd)
    return MlflowClient(uri), tracking.experiment_id(tracking.experiment_name(dataset), uri)


def logged_run(
    client: MlflowClient, experiment: str, frontend: str, seed: int = 1,
    tags: dict | None = None, params: dict | None = None, metrics: dict | None = None,
) -> str:  # fmt: skip
    """A finished run with the tags, params and metrics elm_audio logs and the report reads;
    ``tags``, ``params`` and ``metrics`` add to them or replace them."""
    tags = {"elm_audio.role": "run", "frontend": frontend, "feature_size": "small", "classifier": "svm", "protocol.mode": "honest",
            "experiment": "default", "dataset": "synth", "features_key": KEY, **(tags or {})}  # fmt: skip
    params = {"seed": seed, "n_clips": 36, "frontend.net._target_": "elm_audio.frontends.musical.Musical", **(params or {})}
    metrics = {"val_accuracy": 0.7, "test_accuracy": 0.8, **FOLDS, "gflops_per_clip": 0.6, "extract_seconds": 3.0, **(metrics or {})}
    run_id = client.create_run(experiment, tags=tags).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(run_id, [Metric(k, float(v), now, 0) for k, v in metrics.items()], [Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id)
    return run_id


def report(cwd: Path) -> tuple[int, str]:
    """``python -m elm_audio.report --out reports --cache-dir cache`` in ``cwd``, in this process:
    its exit code and everything it printed."""
    from elm_audio.report.__main__ import main

    with as_a_run_in(cwd) as (out, err):
        code = main(["--out", "reports", "--cache-dir", "cache"])
    return code, out.getvalue() + err.getvalue()


def cells(row: str) -> list[str]:
    """A Markdown table row's cells, split as GitHub's Markdown splits them: at every pipe that no
    backslash escapes."""
    found, cell, escaped = [], "", False
    for ch in row:
        if ch == "|" and not escaped:
            found.append(cell)
            cell = ""
        else:
            cell += ch
        escaped = ch == "\\" and not escaped
    return [c.strip() for c in found[1:]]  # the text before the first pipe is no cell


def section(md: str, title: str) -> str:
    return md.split(f"\n## {title}")[1].split("\n## ")[0]
