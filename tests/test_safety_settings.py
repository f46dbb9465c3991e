"""Safe on shared servers (issue 23): a run is ended only when its process is proven gone; the
settings that used to end in tracebacks end in one line; the report bounds its intervals and
names every run it leaves out; ``data check`` and a run give one verdict on a partial copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
import pytest
from conftest import local_uri
from mlflow.tracking import MlflowClient

from elm_audio import processes, tracking
from elm_audio.sweeps import interrupted, open_storage

IDENTITY = "import json; from elm_audio import processes; print(json.dumps(processes.identity()), flush=True)"


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
