"""Safe on shared servers (issue 23): a run is ended only when its process is proven gone; the
settings that used to end in tracebacks end in one line; the report bounds its intervals and
names every run it leaves out; ``data check`` and a run give one verdict on a partial copy."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.stats
from helpers.runs import local_uri
from mlflow.tracking import MlflowClient

from elm_audio.config import ConfigError, compose
from elm_audio.datasets import DatasetError
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load, run_names
from elm_audio.stores import processes, tracking
from elm_audio.sweeps.parent import SweepRun
from elm_audio.sweeps.storage import open_storage
from elm_audio.sweeps.trials import interrupted

IDENTITY = "import json; from elm_audio.stores import processes; print(json.dumps(processes.identity()), flush=True)"


# 7. process identity ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    uri = local_uri(tmp_path_factory.mktemp("identity"))
    tracking.connect(uri)
    return uri


def ended_process() -> dict[str, str]:
    """The identity a real process had, read inside it; the process has ended since."""
    child = subprocess.run([sys.executable, "-c", IDENTITY], capture_output=True, text=True, check=True)
    return json.loads(child.stdout)


def status_after_next_run(uri: str, owner: dict[str, str]) -> str:
    """A RUNNING run tagged with ``owner`` (as runner.py tags runs), then what the next run's
    clean-up (tracking.end_orphaned_runs) leaves it as."""
    client = MlflowClient(uri)
    experiment = tracking.experiment_id(f"elm_audio/identity-{uuid.uuid4().hex[:8]}", uri)
    run = client.create_run(experiment, tags={f"elm_audio.{k}": v for k, v in owner.items()})
    tracking.end_orphaned_runs(uri, experiment)
    return client.get_run(run.info.run_id).info.status


def test_a_run_of_a_live_process_is_left_running_and_one_of_an_ended_process_is_killed(store):
    assert status_after_next_run(store, processes.identity()) == "RUNNING"
    assert status_after_next_run(store, ended_process()) == "KILLED"


def test_a_pid_now_held_by_a_later_process_is_gone(store):
    """The record's pid is alive (this process), but started at another time: reused."""
    reused = {**processes.identity(), "start_time": "1"}
    assert status_after_next_run(store, reused) == "KILLED"


def test_a_process_of_another_pid_namespace_is_never_judged_by_our_pids(store):
    """Same host, same boot, a pid that is free here, but another pid namespace (a container
    sharing the host's network): it may be running, so it is left alone."""
    elsewhere = {**ended_process(), "pid_ns": "1"}
    assert status_after_next_run(store, elsewhere) == "RUNNING"


def test_a_record_without_the_identity_is_left_alone(store):
    """Runs tagged by older versions (host and pid only) cannot be proven gone."""
    old = {k: v for k, v in ended_process().items() if k in ("host", "pid")}
    assert status_after_next_run(store, old) == "RUNNING"


def test_a_reboot_of_this_machine_ends_its_runs_and_another_machine_of_the_same_name_keeps_them(store):
    before_reboot = {**processes.identity(), "boot_id": str(uuid.uuid4())}
    if "machine" not in before_reboot:
        pytest.skip("no /etc/machine-id here: a reboot cannot be told from another machine")
    assert status_after_next_run(store, before_reboot) == "KILLED"
    assert status_after_next_run(store, {**before_reboot, "machine": "0" * 32}) == "RUNNING"


def free_pid() -> int:
    """A pid no process of this namespace holds (below the last one handed out)."""
    for pid in range(100, 100_000):
        if not processes.process_alive(pid):
            return pid
    raise AssertionError("no free pid below 100,000")


@contextmanager
def process_in_another_pid_namespace(pid: int) -> Iterator[dict[str, str]]:
    """A real process in a new pid namespace (``unshare --pid --fork``, root only) holding ``pid``
    there, a pid free in ours; yields the identity it reads of itself."""
    inner = (
        "import os, time\n"
        f"open('/proc/sys/kernel/ns_last_pid', 'w').write('{pid - 1}')\n"
        "if os.fork() == 0:\n"
        f"    exec({IDENTITY!r})\n"
        "    time.sleep(120)\n"
        "os.wait()\n"
    )
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", inner],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        if not line:
            pytest.skip(f"cannot run a process in a new pid namespace here: {proc.communicate()[1].strip()}")
        yield json.loads(line)
    finally:
        proc.kill()
        proc.wait()


def test_a_live_run_in_another_container_is_not_marked_killed(store):
    with process_in_another_pid_namespace(free_pid()) as owner:
        assert not processes.process_alive(int(owner["pid"]))  # its pid names no process here
        assert owner["host"] == processes.identity()["host"]  # and it shares our host name
        assert status_after_next_run(store, owner) == "RUNNING"


def test_a_sweep_leaves_running_the_trials_of_a_sweeper_in_another_container(tmp_path):
    study = optuna.create_study(
        study_name="shared", storage=open_storage(f"journal:{tmp_path / 'study.journal'}"), direction="maximize"
    )
    with process_in_another_pid_namespace(free_pid()) as owner:
        for who in (owner, ended_process()):
            trial = study.ask()
            for key, value in who.items():
                trial.set_user_attr(f"elm_audio.{key}", value)
        assert [t.number for t in interrupted(study)] == [1]  # the ended sweeper's trial only


# 8. settings that ended in tracebacks --------------------------------------------------------

FOLDER_ROOT = "dataset.root=/nonexistent-h23"  # never read: the settings are refused first


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["seed=-1"], "seed=-1 must be at least 0, at most 4294967295"),
        (["seed=99999999999999999999"], "seed=99999999999999999999 must be at least 0, at most 4294967295"),
        (["dataset.fold_seed=-1"], "dataset.fold_seed=-1 must be at least 0, at most"),
        (["device=foo"], "device=foo is not one of auto, cpu, cuda"),
        (["device=mps"], "device=mps is not one of auto, cpu, cuda"),
        (["frontend.widths.small=0"], "frontend.widths.small=0 must be at least 1"),
        (["frontend.widths.small=-4"], "frontend.widths.small=-4 must be at least 1"),
        (["frontend=temporal", "frontend.net.temporal_lengths=[]"], "frontend.net.temporal_lengths=[] with frontend.net.timbral=false leaves temporal without filters"),
        (["cache.dir=''"], 'cache.dir="" is empty; give a folder'),
    ],
)
def test_a_setting_that_ended_in_a_traceback_is_refused_in_one_line(overrides, says, tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # cache.dir='' used to write the built-in dataset into the working directory
    try:
        with pytest.raises(ConfigError) as refused:
            make_plan(load(compose(["dataset.clips_per_class=6", "dataset.duration=2.0", *overrides])))
    finally:
        os.chdir(cwd)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_one_split_list_is_refused_in_one_line_naming_the_others(class_folder):
    """dataset.split_lists.train=... alone used to be Hydra's 'Key train is not in struct'."""
    with pytest.raises(DatasetError, match=r"^dataset.split_lists needs train, validation, test; missing test, validation$"):
        make_plan(load(compose(["dataset=folder", f"dataset.root={class_folder}", "dataset.split_lists.train=/x"])))


def test_a_sweep_with_a_plus_key_logs_its_plan(tmp_path):
    """``-m +token=abc``: the parent run logged param search_space.+token, which MLflow refuses."""
    uri = local_uri(tmp_path)
    cfg = compose([f"tracking.uri={uri}"])
    study = optuna.create_study(direction="maximize")
    sweep = SweepRun(uri, run_names(cfg), study, None, {"+token": "abc", "classifier.C": "tag(log, interval(0.01, 1000))"})
    sweep.log_plan(3)
    params = MlflowClient(uri).get_run(sweep.run_id).data.params
    assert params["search_space.token"] == "abc" and params["n_trials"] == "3"


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_ends_the_run_in_one_line(tmp_path):
    """A shell's kill -TERM -<pgid> while clips are being decoded (two decoding threads): the
    run ends KILLED with its one line, not with a traceback."""
    env = {**os.environ, "ELM_AUDIO_CACHE": str(tmp_path / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = ["dataset.clips_per_class=50", "dataset.duration=6.0", "extract.progress=false", "extract.num_workers=2"]
    proc = subprocess.Popen([sys.executable, "-m", "elm_audio", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while not list((tmp_path / "cache").glob(".tmp-*")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.5)  # the decoding threads are at work
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert "elm_audio: interrupted; run " in err and "ended as KILLED" in err


# 9. the report: bounded intervals, every left-out run named -------------------------------------


def logged_run(client: MlflowClient, experiment: str, seed: int, metrics: dict[str, float], status: str = "FINISHED") -> str:
    """A run as elm_audio logs one (the tags, params and metrics the report reads)."""
    tags = {"elm_audio.role": "run", "frontend": "temporal", "feature_size": "small", "classifier": "svm",
            "protocol.mode": "honest", "experiment": "default", "dataset": "synth"}  # fmt: skip
    run = client.create_run(experiment, tags=tags)
    for key, value in {"seed": seed, "n_clips": 36, "frontend.net._target_": "elm_audio.frontends.musical.Musical"}.items():
        client.log_param(run.info.run_id, key, value)
    for key, value in {"gflops_per_clip": 0.6, "extract_seconds": 3.0, **metrics}.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


FOLDS = {"fold1_test_accuracy": 0.8, "fold2_test_accuracy": 1.0, "fold3_test_accuracy": 1.0}


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """One usable run whose folds spread widely, and three that cannot be compared; the report."""
    from elm_audio.report.__main__ import main as report_main

    cwd = tmp_path_factory.mktemp("report")
    uri = local_uri(cwd)
    tracking.connect(uri)
    client = MlflowClient(uri)
    experiment = tracking.experiment_id(tracking.experiment_name("synth"), uri)
    good = logged_run(client, experiment, 1, {"val_accuracy": 0.7, "test_accuracy": 0.9333, **FOLDS})
    dropped = {
        logged_run(client, experiment, 2, {"val_accuracy": float("nan"), "test_accuracy": 0.9333, **FOLDS}): "val_accuracy",
        logged_run(client, experiment, 3, {"test_accuracy": 0.9333, **FOLDS}): "val_accuracy",
        logged_run(client, experiment, 4, {"val_accuracy": 0.9, "test_accuracy": float("nan")}): "test_accuracy",
        logged_run(client, experiment, 5, {"val_accuracy": 0.9}, status="KILLED"): "killed",
    }
    printed = tmp_path_factory.mktemp("printed") / "out.txt"
    with open(printed, "w") as out, contextlib.redirect_stdout(out):
        assert report_main(["--tracking-uri", uri, "--out", str(cwd / "reports")]) == 0
    return cwd / "reports" / "synth", printed.read_text(), good, dropped


def test_a_cells_interval_stays_within_0_and_100_percent(reported):
    folder, _, _, _ = reported
    table = pd.read_csv(folder / "table.csv")
    (cell,) = table.to_dict("records")
    folds = np.array(list(FOLDS.values()))
    # the corrected resampled t-interval (honest protocol, 3 folds: n_test/n_train = 1/1)
    half = scipy.stats.t.ppf(0.975, 2) * np.sqrt((1 / 3 + 1) * folds.var(ddof=1))
    assert folds.mean() + half > 1  # the unbounded interval reaches past 100%
    assert cell["ci_high"] == 1.0 and cell["ci_low"] == pytest.approx(folds.mean() - half)
    md = (folder / "table.md").read_text()
    assert "[" + f"{100 * (folds.mean() - half):.1f}, 100.0]" in md and "clipped to [0, 100]" in md


def test_every_run_the_report_leaves_out_is_named_with_its_reason(reported):
    folder, printed, good, dropped = reported
    listed = pd.read_csv(folder / "left_out.csv")
    assert set(listed["run_id"]) == set(dropped) and good not in set(listed["run_id"])
    section = (folder / "table.md").read_text().split("## Left out")[1].split("##")[0]
    for run_id, why in dropped.items():
        (reason,) = listed.loc[listed["run_id"] == run_id, "reason"]
        assert why in reason
        assert run_id in section and f"left out: run {run_id}" in printed and why in printed.split(run_id)[1].split("\n")[0]
    assert "n=1" in (folder / "table.md").read_text()  # the cell counts the usable run only


# 11. data check and a run agree on a partial copy --------------------------------------------


@pytest.fixture(scope="module")
def partial_us8k(tmp_path_factory):
    """An UrbanSound8K copy whose CSV lists 20 of the 8,732 clips (two classes, one clip of each
    per fold), all present: the protocol's ten folds can be run, the published dataset it is not."""
    from helpers.layouts import make_us8k, us8k_rows

    rows, seen = [], set()
    for row in us8k_rows():
        if row["class"] in ("dog_bark", "siren") and (row["fold"], row["class"]) not in seen:
            seen.add((row["fold"], row["class"]))
            rows.append(row)
    assert len(rows) == 20
    return make_us8k(tmp_path_factory.mktemp("us8k") / "UrbanSound8K", rows)


WARNING = "INCOMPLETE COPY of us8k: 20 clips where the published dataset has 8732; no clips of class(es) air_conditioner"


def test_data_check_passes_a_partial_copy_that_gives_the_protocol_and_warns_loudly(partial_us8k, capsys):
    from elm_audio.data import main as data_main

    code = data_main(["check", "dataset=us8k", f"dataset.root={partial_us8k}", "frontend=mfcc"])
    out = capsys.readouterr().out
    assert code == 0 and f"WARNING        {WARNING}" in out and "not comparable with the paper's" in out
    assert "OK: the copy gives the protocol, but it is INCOMPLETE" in out


@pytest.mark.slow
def test_a_run_on_the_partial_copy_gives_the_same_verdict_and_the_same_warning(partial_us8k, tmp_path):
    from helpers.runs import logged_runs, run_here

    _, err = run_here(tmp_path, "dataset=us8k", f"dataset.root={partial_us8k}", "frontend=mfcc",
                      "extract.progress=false", "extract.num_workers=0")  # fmt: skip
    assert f"elm_audio: warning: {WARNING}" in err
    _, (run,) = logged_runs(tmp_path, "us8k")
    assert run.info.status == "FINISHED" and run.data.tags["incomplete_copy"].startswith(WARNING)
