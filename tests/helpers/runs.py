"""Running the tool as a test needs it: the command line in a clean folder (run_cli), a run, a
sweep or a report in this process as that command would (as_a_run_in, run_here, sweep_here),
the small end-to-end settings (QUICK), and the MLflow store a run wrote (local_uri, logged_runs)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from mlflow.tracking import MlflowClient

from elm_audio.config import compose

# Small end-to-end runs: a handful of short synth clips, no progress bar.
QUICK = [
    "dataset.clips_per_class=6",
    "dataset.duration=2.0",
    "dataset.n_folds=3",
    "extract.progress=false",
    "extract.num_workers=0",
]

# where empty_store makes its copy: conftest's session fixture sets "factory" (pytest's tmp_path_factory)
EMPTY_STORE: dict[str, object] = {}


def empty_store() -> Path:
    """An MLflow SQLite store with its tables made and nothing in it, made once per worker at
    first use: creating MLflow's tables (its schema migrations) takes seconds, a copy milliseconds."""
    if "db" not in EMPTY_STORE:
        db = EMPTY_STORE["factory"].mktemp("empty_store") / "mlflow.db"
        MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
        EMPTY_STORE["db"] = db
    return EMPTY_STORE["db"]


def seed_empty_store(cwd: Path) -> None:
    """Start ``cwd``'s default MLflow store, where there is none yet, as a copy of an empty one."""
    db = cwd / "mlruns" / "mlflow.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_store(), db)


def run_cli(
    module: str, *args: str, cwd: Path, env: dict | None = None, check: bool = True, seed_store: bool | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` as a user would, in ``cwd``.

    ``seed_store`` (default: when the run is expected to succeed) starts the default store
    ``cwd/mlruns/mlflow.db``, where there is none yet, as a copy of an empty one; a run expected
    to fail finds no store, so a test can see that it wrote none, and ``seed_store=False`` lets
    a run create its store as a user's first run does."""
    full_env = {**os.environ, "ELM_AUDIO_CACHE": str(cwd / "cache"), "HYDRA_FULL_ERROR": "0"}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env.update(env or {})
    if check if seed_store is None else seed_store:
        seed_empty_store(cwd)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def as_a_run_in(cwd: Path, seed_store: bool = True) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What run_cli's process sees, in this process: ``cwd`` as working folder, its default
    MLflow store started (``seed_store``, as run_cli's), no MLFLOW_TRACKING_URI; yields what is
    printed (stdout, stderr).

    For tests of what a run or report does with its data and stores, where a fresh
    interpreter's imports (about 7 s of CPU each, most of the suite's time) add nothing;
    the command line's own behaviour (exit codes, one-line errors, signals) keeps run_cli."""
    if seed_store:
        seed_empty_store(cwd)
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(cwd),
        mock.patch.dict(os.environ),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        yield out, err


def run_here(cwd: Path, *overrides: str) -> tuple[str, str]:
    """``python -m elm_audio <overrides>`` (one run) as runner.run does it, in this process:
    see as_a_run_in. The features' cache is ``cwd/cache``, as run_cli's; returns (stdout, stderr)."""
    from elm_audio.run.runner import run

    with as_a_run_in(cwd) as (out, err):
        run(compose([f"cache.dir={cwd / 'cache'}", *overrides]))
    return out.getvalue(), err.getvalue()


def sweep_here(cwd: Path, *overrides: str) -> str:
    """``python -m elm_audio -m <overrides>`` as Hydra runs it, in this process (see
    as_a_run_in: a new interpreter's imports would cost more than the sweep); the
    logging Hydra configures is undone after. Returns what the sweep printed."""
    from hydra.core.global_hydra import GlobalHydra

    from elm_audio.__main__ import app

    loggers = [logging.root, *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    before = [(lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled) for lg in loggers]
    try:
        with as_a_run_in(cwd) as (out, err), mock.patch.object(sys, "argv", ["elm_audio", "-m", *overrides]):
            app()
    except SystemExit:
        raise AssertionError(f"the sweep failed:\n{out.getvalue()}\n{err.getvalue()}") from None
    finally:
        GlobalHydra.instance().clear()
        for lg, level, handlers, propagate, disabled in before:
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled
    return out.getvalue()



def local_uri(cwd: Path) -> str:
    """The MLflow store a run in ``cwd`` writes by default."""
    return f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"


def logged_runs(uri_or_cwd: str | Path, dataset: str = "synth", **search) -> tuple[MlflowClient, list]:
    """The store's client and the runs of ``dataset``'s experiment, oldest first."""
    uri = local_uri(uri_or_cwd) if isinstance(uri_or_cwd, Path) else uri_or_cwd
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"elm_audio/{dataset}")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], max_results=1000, **search)
    return client, runs
