"""Sweeps on a real SLURM cluster (tests/helpers/slurm_cluster.py: one node, with accounting), trials as
jobs through hydra-submitit-launcher, one of them cancelled while it runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from filelock import FileLock
from helpers.runs import QUICK, empty_store, logged_runs
from helpers.services import mlflow_server
from helpers.slurm_cluster import ClusterUnavailable, start, stop

from elm_audio.config import compose
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SWEEP = [
    *QUICK,
    "frontend=temporal",
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.timeout_min=5",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.array_parallelism=2",
    "hydra.sweeper.n_jobs=2",
    "hydra.sweeper.n_trials=2",  # one batch of two jobs; the rerun adds the third
    "hydra.sweeper.study_name=slurm",
]


@pytest.fixture(scope="module")
def cluster():
    """This clone's cluster (started, or found up); the test skips, in one line, only where SLURM
    cannot run here (no packages, not root): a daemon that does not start fails it, with its log."""
    try:
        return start()
    except ClusterUnavailable as err:
        pytest.skip(f"no SLURM cluster here: {err}")


def _slurm(env, *cmd: str, attempts: int = 5) -> str:
    """A SLURM client command's output. While slurmctld is busy starting or ending jobs on two
    loaded cores, a query can fail ("Socket timed out on send/recv operation"; squeue exited 1 in
    one CI run): as a user would, it is retried a few times before the test fails with its stderr."""
    why = ""
    for attempt in range(attempts):
        try:
            proc = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            why = "no answer in 30 s"
        else:
            if proc.returncode == 0:
                return proc.stdout
            why = proc.stderr.strip() or f"exit status {proc.returncode}"
        time.sleep(1 + attempt)
    raise AssertionError(f"{' '.join(cmd)} failed {attempts} times; the last: {why}")


def _wait_for(what: str, check, seconds: float, proc: subprocess.Popen | None = None):
    """``check()`` once it is true; fails after ``seconds``, or when the sweep ``proc`` ended."""
    deadline = time.time() + seconds
    while not (found := check()):
        ended = proc is not None and proc.poll() is not None
        if ended or time.time() > deadline:
            out = proc.communicate()[0] if ended else ""
            raise AssertionError(f"waited for {what}; sweep: {out[-3000:]}")
        time.sleep(0.5)
    return found


def test_a_sweep_of_slurm_jobs_survives_a_cancelled_job_and_resumes(cluster, tmp_path):
    shutil.copyfile(empty_store(), tmp_path / "mlflow.db")  # the server need not make its tables (seconds)
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts") as tracking:
        env = {**cluster, "ELM_AUDIO_CACHE": str(tmp_path / "cache"), "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        args = [*SWEEP, f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}", f"tracking.uri={tracking}"]
        key = make_plan(load(compose([*QUICK, "frontend=temporal", f"cache.dir={tmp_path / 'cache'}"]))).key

        def sweep() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "elm_audio", "-m", *args], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip

        # hold the features' lock: the first batch's two jobs start their runs, then wait for it
        def jobs() -> dict[str, str]:
            listing = _slurm(cluster, "sacct", "-n", "-X", "-P", "-o", "JobID,State").split("\n")
            return dict(line.split("|")[:2] for line in listing if line)

        before = set(jobs())
        lock = FileLock(str(tmp_path / "cache" / f"{key}.lock"))
        lock.acquire()
        proc = sweep()
        try:

            def waiting_runs():
                try:
                    _, runs = logged_runs(tracking, filter_string="tags.`elm_audio.role` = 'trial'")
                except AttributeError:  # no experiment yet
                    return None
                return runs if len([r for r in runs if r.info.status == "RUNNING"]) == 2 else None

            _wait_for("two trial runs waiting for the features", waiting_runs, 150, proc)
            running = _slurm(cluster, "squeue", "-h", "-t", "RUNNING", "-o", "%i").split()
            (victim,) = [j for j in running if j.endswith("_1")]  # trial 1's job
            _slurm(cluster, "scancel", victim)
            _wait_for(f"{victim} cancelled", lambda: victim not in _slurm(cluster, "squeue", "-h", "-o", "%i"), 60, proc)
        finally:
            lock.release()
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out[-3000:]

        def settled():  # a job's result is written before SLURM sees its process end
            found = {j: s for j, s in jobs().items() if j not in before}
            return found if not {"RUNNING", "COMPLETING"} & set(found.values()) else None

        mine = _wait_for("SLURM's accounting to see every job end", settled, 60)
        assert mine.pop(victim).startswith("CANCELLED")
        assert list(mine.values()) == ["COMPLETED"], mine

        study = optuna.load_study(study_name="slurm", storage=f"sqlite:///{tmp_path / 'study.db'}")
        by_state = {t.number: t.state.name for t in study.trials}
        assert by_state == {0: "COMPLETE", 1: "FAIL"}
        reason = study.trials[1].user_attrs["fail_reason"]
        assert f"SLURM job {victim} ended CANCELLED" in reason and ".submitit" in reason and ".out" in reason

        _, runs = logged_runs(tracking, filter_string="tags.`elm_audio.role` = 'trial'")
        assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
        assert [r.data.tags["trial"] for r in runs if r.info.status == "FINISHED"] == ["0"]

        # the same command again runs only what is left: one trial, on the features trial 0 cached
        proc = sweep()
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out[-3000:]
        study = optuna.load_study(study_name="slurm", storage=f"sqlite:///{tmp_path / 'study.db'}")
        assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
        _, runs = logged_runs(tracking)
        assert not [r for r in runs if r.info.status == "RUNNING"]
        trials = [r for r in runs if r.data.tags.get("elm_audio.role") == "trial"]
        assert sum(r.data.tags.get("features_logged") == "true" for r in trials) == 1  # extracted once


def test_a_second_cluster_beside_this_one_has_its_own_munge_and_ports(cluster):
    """Another clone's cluster (its own state folder) comes up while this one is up, and both run
    jobs: each has its own munge socket and key and its own ports (with one fixed munge socket,
    the second cluster's munged could not start)."""
    folder = Path(tempfile.mkdtemp(prefix="elm_slurm_", dir="/tmp"))  # a short path: munge's socket is in it
    folder.chmod(0o755)  # munged, run as the munge user, reaches its files below it
    other = folder / "slurm"  # (and slurm.lock beside it)
    try:
        theirs = start(other)

        def settings(env) -> dict[str, str]:
            keys = ("AuthInfo", "SlurmctldPort", "SlurmdPort", "AccountingStoragePort", "AccountingStoragePass")
            lines = Path(env["SLURM_CONF"]).read_text().splitlines()
            return dict(line.split("=", 1) for line in lines if line.startswith(keys))

        ours, others = settings(cluster), settings(theirs)
        assert len(ours) == 5 and not set(ours.items()) & set(others.items()), (ours, others)
        job = _slurm(theirs, "sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true").strip()

        def ended() -> bool:
            return _slurm(theirs, "sacct", "-n", "-X", "-j", job, "-o", "State").strip() == "COMPLETED"

        _wait_for(f"job {job} on the second cluster", ended, 60)
        assert _slurm(cluster, "sinfo", "-h", "-o", "%T").strip() in ("idle", "mixed", "allocated")
        _slurm(cluster, "sacct", "-n", "-X", "-S", "now")  # this cluster's accounting still answers
    finally:
        stop(other)
        shutil.rmtree(folder, ignore_errors=True)
