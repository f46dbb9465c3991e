"""SIGTERM to a sweep whose trials run in joblib's workers: no worker outlives the sweep, its
runs end as KILLED, its trials in flight fail, and it exits with one line."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from helpers.runs import QUICK, logged_runs, seed_empty_store
from mlflow.exceptions import MlflowException

from elm_audio.stores.processes import start_time
from elm_audio.sweeps.storage import open_storage

pytestmark = pytest.mark.slow


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (state, parent pid, ...); [] once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid``, each with its start time (so that a reused pid is not taken
    for it); read from /proc, psutil not being a dependency."""
    parent_of = {p: int(f[1]) for p in (int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()) if (f := _stat(p))}
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child in [c for c, p in parent_of.items() if p == parent]:
            if started := start_time(str(child)):
                found[child] = started
                todo.append(child)
    return found


def alive(processes: dict[int, str]) -> list[int]:
    """Those still running: the same start time, and not a zombie waiting for its parent."""
    return [p for p, started in processes.items() if start_time(str(p)) == started and _stat(p)[:1] != ["Z"]]


def running_trial_runs(cwd: Path) -> list[str]:
    if not (cwd / "mlruns" / "mlflow.db").exists():
        return []
    try:
        _, runs = logged_runs(cwd, filter_string="attributes.status = 'RUNNING'")
    except (AttributeError, MlflowException):  # no experiment yet, or the store busy being created
        return []
    return [r.info.run_id for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_sigterm_ends_a_joblib_sweep_its_workers_and_its_runs(tmp_path):
    journal = tmp_path / "study.journal"
    # clips three times QUICK's length: a trial that has started is still extracting when signalled
    data = [o for o in QUICK if not o.startswith("dataset.duration=")] + ["dataset.duration=6.0"]
    args = [
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage=journal:{journal}", "hydra.sweeper.study_name=term", *data,
    ]  # fmt: skip
    env = {**os.environ, "ELM_AUDIO_CACHE": str(tmp_path / "cache"), "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    seed_empty_store(tmp_path)
    # files, not pipes: a worker that outlives the sweep would hold a pipe open
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        sweep = subprocess.Popen(
            [sys.executable, "-m", "elm_audio", *args], cwd=tmp_path, env=env, stdout=out, stderr=err,
            start_new_session=True,
        )  # fmt: skip
    workers: dict[int, str] = {}
    try:
        deadline = time.time() + 240
        while not (in_flight := running_trial_runs(tmp_path)):
            assert sweep.poll() is None and time.time() < deadline, (tmp_path / "err").read_text()
            time.sleep(0.5)
        workers = descendants(sweep.pid)
        os.kill(sweep.pid, signal.SIGTERM)  # the sweeper alone, as a supervisor or `kill PID` does
        sweep.wait(timeout=60)
        deadline = time.time() + 30
        while alive(workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not alive(workers), f"left running: {alive(workers)}"
    finally:  # nothing of the sweep's left behind, whatever failed
        if sweep.poll() is None:
            sweep.kill()
        for pid in alive(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sweep.wait()

    stderr = (tmp_path / "err").read_text()
    assert sweep.returncode == 1 and "Traceback" not in stderr, stderr
    assert re.search(r"^elm_audio: interrupted; sweep run \w+ ended as KILLED, with \d trial run\(s\) of its workers; "
                     r"trial\(s\) [\d, ]+ marked failed$", stderr, re.M), stderr
    _, runs = logged_runs(tmp_path)
    assert {r.info.run_id: r.info.status for r in runs if r.info.run_id in in_flight} == dict.fromkeys(in_flight, "KILLED")
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    assert [r.info.status for r in runs if r.data.tags.get("elm_audio.role") == "sweep"] == ["KILLED"]
    study = optuna.load_study(study_name="term", storage=open_storage(f"journal:{journal}"))
    states = {t.state for t in study.get_trials()}
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.RUNNING not in states
