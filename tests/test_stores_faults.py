"""The stores on a shared server: no secret in any form of URI or environment value reaches a log,
a file or MLflow; the MLflow store survives a kill while it is created and a full disk; damaged or
unreachable stores (MLflow's SQLite file, an Optuna journal, PostgreSQL) end in one line that says
what happened and what to do."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import yaml
from helpers.audio import tone_folder
from helpers.runs import QUICK, logged_runs, run_cli
from helpers.services import free_port, postgres, postgres_bin
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from elm_audio.config import ConfigError, compose
from elm_audio.report.__main__ import main as report_main
from elm_audio.stores.redaction import (
    as_written_from_environment,
    redact,
    redact_file,
    redact_value,
)
from elm_audio.stores.tracking import connect
from elm_audio.sweeps.storage import StorageError, open_storage, open_study

# 3. secrets -------------------------------------------------------------------------------------

FORMS = [
    ("postgresql://elm:pa/ss-1@db/optuna", "pa/ss-1"),  # valid for SQLAlchemy: the password holds '/'
    ("postgresql://elm:pa ss-2@db:5432/optuna", "pa ss-2"),
    ("postgresql://elm:pa\"s's-3@db/optuna", "pa\"s's-3"),
    ("mysql+pymysql://elm:p%40ss-4@db/optuna", "p%40ss-4"),
    ("postgresql://elm@db/optuna?sslmode=require&password=qu3ry-5", "qu3ry-5"),
    ("https://mlflow.example/api?token=t0ken-6&x=1", "t0ken-6"),
    ("http://alice:s3cr:et-7@127.0.0.1:9", "s3cr:et-7"),
]


@pytest.mark.parametrize("uri,secret", FORMS)
def test_every_form_of_uri_secret_is_hidden_in_values_and_in_text_that_quotes_them(uri, secret):
    shown = redact_value(uri)
    assert secret not in shown and "***" in shown
    assert shown.split("***")[0] in uri  # the scheme, user and host stay readable
    line = f"hydra.sweeper.storage={uri}: cannot connect (server at 'db' refused); fix the URL"
    assert secret not in redact(line) and "fix the URL" in redact(line)


def test_uris_without_secrets_are_left_as_they_are():
    for uri in ("sqlite:////srv/mlruns/mlflow.db", "http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning",
                "journal:/shared/study.log", "postgresql://elm@db:5432/optuna?sslmode=require"):  # fmt: skip
        assert redact_value(uri) == uri


def test_a_saved_yaml_is_redacted_even_where_a_long_value_wraps_over_lines(tmp_path):
    uri = "postgresql://elm:a pass phrase with spaces@db.example.org:5432/optuna?password=and a query one&x=1"
    saved = tmp_path / "hydra.yaml"
    saved.write_text(OmegaConf.to_yaml({"hydra": {"overrides": {"task": [f"hydra.sweeper.storage={uri}"]}, "storage": uri}}))
    assert "\n" in saved.read_text().split("storage: ")[1].strip()  # yaml wrapped the value: no one line holds it
    redact_file(saved)
    text = saved.read_text()
    assert "phrase" not in text and "query one" not in text
    assert yaml.safe_load(text)["hydra"]["storage"] == "postgresql://elm:***@db.example.org:5432/optuna?password=***&x=1"


def test_values_read_from_the_environment_are_recorded_as_written(monkeypatch):
    monkeypatch.setenv("ELM_TEST_GROUP", "(.*)(?#env-t0ken)")
    cfg = compose(["dataset.group=${oc.env:ELM_TEST_GROUP}", "+extra.copy=${dataset.group}"])
    recorded = as_written_from_environment(OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_container(cfg, resolve=False))
    assert recorded["dataset"]["group"] == "${oc.env:ELM_TEST_GROUP}"
    assert recorded["extra"]["copy"] == "${dataset.group}"  # an interpolation of it too
    assert recorded["cache"]["dir"] == cfg.cache.dir  # the cache folder is a path: recorded resolved
    assert "env-t0ken" not in json.dumps(recorded)


def all_text_under(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries not installed (.ci/run installs them)")
def test_no_secret_reaches_output_saved_configs_or_mlflow_in_a_stored_sweep(tmp_path):
    # PostgreSQL trusts loopback here, so any password connects: the one in the URL is what we track
    password, query, token = 'pa/ss w0rd"q', "qu3ry-s3cret", "env-t0ken"
    with postgres(("optuna",)) as pg:
        storage = pg.replace("postgres@", f"postgres:{password}@") + f"/optuna?application_name=elm&password={query}"
        proc = run_cli(
            "elm_audio", "-m", "hydra.sweeper.n_trials=1", *QUICK, "frontend=mfcc",
            f"hydra.sweeper.storage='{storage}'", "dataset.group=${oc.env:ELM_TEST_GROUP}",
            cwd=tmp_path, env={"ELM_TEST_GROUP": f"(.*)(?#{token})"},
        )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert "optuna-dashboard postgresql://postgres:***@127.0.0.1" in output
    for secret in ("w0rd", query):
        assert secret not in output
        assert secret not in all_text_under(tmp_path / "multirun")
    client, runs = logged_runs(tmp_path)
    assert len(runs) == 2  # the sweep's parent and its trial
    parent = next(r for r in runs if r.data.tags.get("elm_audio.role") == "sweep")
    assert parent.data.tags["optuna.storage"].startswith("postgresql://postgres:***@127.0.0.1")
    for run in runs:
        recorded = json.dumps([run.data.params, run.data.tags])
        if run is not parent:
            (tmp_path / run.info.run_id).mkdir()
            recorded += Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / run.info.run_id))).read_text()
            assert run.data.params["dataset.group"] == "${oc.env:ELM_TEST_GROUP}"
        for secret in ("w0rd", query, token):
            assert secret not in recorded


# 4. a kill while MLflow creates its store -------------------------------------------------------


def start_creating(uri: str) -> subprocess.Popen:
    code = f"from elm_audio.stores.tracking import connect; connect({uri!r})"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # set by this process's connect()
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.2, 0.8])  # seconds after its first file appears: in the migrations
def test_a_kill_while_the_store_is_created_leaves_nothing_the_next_run_trips_on(tmp_path, delay):
    db = tmp_path / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{db}"
    proc = start_creating(uri)
    deadline = time.time() + 60
    while not [p for p in db.parent.glob("mlflow.db*") if not p.name.endswith(".lock")]:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    connect(uri)  # the next run: creates or opens the store without an error
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("elm_audio/after-kill"))
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert [p.name for p in db.parent.iterdir() if ".creating-" in p.name] == []


# 5. a full disk ---------------------------------------------------------------------------------


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    if shutil.which("mount") is None or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    ).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` bytes free."""
    stat = os.statvfs(disk)
    with (disk / "filler").open("wb") as fh:
        fh.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))


@pytest.fixture()
def clips(tmp_path) -> Path:
    return tone_folder(tmp_path / "clips", 4, sr=12_000)


def folder_run(clips: Path) -> list[str]:
    # temporal, large: 3,584 values a clip, 115 kB for the eight clips, computed in a second
    return ["dataset=folder", f"dataset.root={clips}", "dataset.n_folds=4", "frontend=temporal", "feature_size=large",
            "extract.progress=false", "extract.num_workers=0"]  # fmt: skip


@pytest.mark.slow
def test_a_full_cache_disk_is_one_line_a_failed_run_and_no_leftovers(tmp_path, clips):
    with small_disk(tmp_path / "disk", "256k") as disk:
        fill(disk, leave=8192)  # room for the file's header, not for its rows
        proc = run_cli("elm_audio", *folder_run(clips), f"cache.dir={disk}", cwd=tmp_path, check=False)
        assert proc.returncode == 1, proc.stderr  # not killed by SIGBUS (-7)
        assert "Traceback" not in proc.stderr
        assert f"cache.dir={disk}: the disk is full" in proc.stderr and "free space" in proc.stderr
        assert not list(disk.glob(".tmp-*"))
    _, (run,) = logged_runs(tmp_path, dataset="folder")
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_a_full_store_disk_is_one_line(tmp_path, clips):
    with small_disk(tmp_path / "disk", "4m") as disk:
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        connect(uri)
        fill(disk, leave=0)
        proc = run_cli("elm_audio", *folder_run(clips), f"tracking.uri={uri}", cwd=tmp_path, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "the disk" in proc.stderr and "is full; free space there" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 3


# 6. damaged or unreachable stores ---------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """An MLflow SQLite store holding one experiment and one run."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    uri = f"sqlite:///{db}"
    connect(uri)
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("elm_audio/synth"))
    client.log_metric(run.info.run_id, "test_accuracy", 0.5)
    client.set_terminated(run.info.run_id)
    return db


def truncate(data: bytes) -> bytes:
    return data[: len(data) // 2 + 777]


def garble_header(data: bytes) -> bytes:
    return os.urandom(100) + data[100:]


def garble_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + os.urandom(8192) + data[middle + 8192 :]


@pytest.mark.parametrize("damage", [truncate, garble_header, garble_middle])
def test_a_damaged_mlflow_store_is_one_line_for_the_run_and_the_report(store, tmp_path, capsys, damage):
    db = tmp_path / "mlflow.db"
    db.write_bytes(damage(store.read_bytes()))
    with pytest.raises(ConfigError) as err:
        connect(f"sqlite:///{db}")
    assert "the MLflow store is damaged" in str(err.value) and f"move {db} aside" in str(err.value)
    assert report_main(["--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "reports")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("elm_audio.report: tracking.uri=") and "the MLflow store is damaged" in line
    assert "\n" not in line


def journal_with_trials(path: Path, n: int) -> None:
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))), study_name="s")
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(params={"x": float(i)}, distributions={"x": optuna.distributions.FloatDistribution(0, 10)}, value=float(i)))  # fmt: skip


@pytest.mark.parametrize("cut", ["mid-line", "before-newline"])
def test_a_journal_whose_last_record_was_cut_is_repaired_and_the_study_goes_on(tmp_path, cut):
    path = tmp_path / "study.log"
    journal_with_trials(path, 3)
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_start + 10] if cut == "mid-line" else data[:-1])  # a kill while writing it
    study = open_study(open_storage(f"journal:{path}"), "s", None, "minimize")
    trial = study.ask()
    study.tell(trial, 1.0)
    reloaded = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    states = [t.state for t in reloaded.get_trials()]
    assert len(states) in (3, 4) and states[-1] == optuna.trial.TrialState.COMPLETE  # the cut record is gone, no more


def test_a_journal_damaged_inside_is_one_line(tmp_path):
    path = tmp_path / "study.log"
    journal_with_trials(path, 3)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:1] + [b"{garbage\n"] + lines[1:]))
    with pytest.raises(StorageError, match=f"storage=journal:{path}: the journal is damaged .*; restore it from a copy, or start"):
        open_study(open_storage(f"journal:{path}"), "s", None, "minimize")


def test_an_unreachable_postgresql_storage_fails_fast_in_one_line():
    start = time.perf_counter()
    with pytest.raises(StorageError) as err:
        open_storage(f"postgresql://elm:pa/ss@127.0.0.1:{free_port()}/optuna")
    assert time.perf_counter() - start < 10
    message = str(err.value)
    assert message.startswith("hydra.sweeper.storage=postgresql://elm:***@127.0.0.1") and "cannot connect" in message
    assert "pa/ss" not in message and "start the database server" in message


@pytest.mark.slow
def test_a_sweep_on_an_unreachable_storage_stops_with_one_line(tmp_path):
    storage = f"postgresql://elm:pa/ss@127.0.0.1:{free_port()}/optuna"
    proc = run_cli("elm_audio", "-m", *QUICK, f"hydra.sweeper.storage={storage}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("elm_audio: hydra.sweeper.storage=postgresql://elm:***@")
    assert "pa/ss" not in proc.stdout + proc.stderr
