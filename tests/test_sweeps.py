"""Optuna sweeps through Hydra: one parent run per sweep, one extraction, the paper's grid,
shared studies on a real PostgreSQL and MLflow server, and resuming an interrupted sweep."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from helpers.runs import QUICK, local_uri, logged_runs, run_cli, seed_empty_store
from helpers.services import mlflow_server, postgres, postgres_bin
from mlflow.tracking import MlflowClient

from elm_audio.stores import processes, tracking
from elm_audio.sweeps.parent import nested_test_score
from elm_audio.sweeps.space import expand_grid
from elm_audio.sweeps.storage import open_storage
from elm_audio.sweeps.trials import interrupted

pytestmark = pytest.mark.slow


def sweep_runs(uri: str, dataset: str = "synth"):
    client, runs = logged_runs(uri, dataset)
    parents = [r for r in runs if r.data.tags.get("elm_audio.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("elm_audio.role") == "trial"]
    return client, parents, trials


def features_logged(trials) -> list:
    return [r for r in trials if r.data.tags.get("features_logged") == "true"]


def test_a_sweep_makes_child_runs_under_one_parent_and_extracts_once(tmp_path):
    proc = run_cli("elm_audio", "-m", "hydra.sweeper.n_trials=8", *QUICK, cwd=tmp_path)
    client, (parent,), trials = sweep_runs(local_uri(tmp_path))
    assert len(trials) == 8 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert sorted(int(r.data.tags["trial"]) for r in trials) == list(range(8))
    # one extraction: one cache entry, and only the first trial stored the matrix
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir() and len(p.name) == 20]) == 1
    (owner,) = features_logged(trials)
    assert {r.data.tags["features_run_id"] for r in trials} == {owner.info.run_id}
    # the parent: search space, best trial, its params and test accuracy, and the objective figure
    best = max(trials, key=lambda r: (r.data.metrics["val_accuracy"], -int(r.data.tags["trial"])))
    p = parent.data
    assert p.metrics["best_val_accuracy"] == best.data.metrics["val_accuracy"]
    assert p.metrics["best_test_accuracy"] == best.data.metrics["test_accuracy"]
    assert p.tags["best_run_id"] == best.info.run_id
    assert p.params["best.classifier.C"] == best.data.params["classifier.C"]
    assert p.params["search_space.classifier.C"] == "tag(log, interval(0.01, 1000))"
    assert "objective.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert f"best trial #{best.data.tags['trial']}" in proc.stdout
    # val_accuracy is the objective, test data never chose anything
    vals = sorted(r.data.metrics["val_accuracy"] for r in trials)
    assert p.metrics["best_val_accuracy"] == vals[-1]


def test_search_space_entries_can_be_narrowed_or_fixed_on_the_command_line(tmp_path):
    run_cli(
        "elm_audio", "-m", "hydra.sweeper.n_trials=4", "classifier.C=tag(log, interval(1, 2))",
        "classifier.kernel=rbf", *QUICK, cwd=tmp_path,
    )  # fmt: skip
    _, _, trials = sweep_runs(local_uri(tmp_path))
    assert len(trials) == 4
    assert all(1 <= float(r.data.params["classifier.C"]) <= 2 for r in trials)
    assert {r.data.params["classifier.kernel"] for r in trials} == {"rbf"}


def test_elm_sweeps_hidden_units_on_a_log_scale(tmp_path):
    run_cli("elm_audio", "-m", "classifier=elm", "hydra.sweeper.n_trials=3", *QUICK, cwd=tmp_path)
    _, _, trials = sweep_runs(local_uri(tmp_path))
    assert all(100 <= int(r.data.params["classifier.hidden_units"]) <= 5000 for r in trials)


def test_parallel_trials_with_joblib_extract_once(tmp_path):
    run_cli(
        "elm_audio", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4", *QUICK, "extract.num_workers=1", cwd=tmp_path,
    )  # fmt: skip
    _, (parent,), trials = sweep_runs(local_uri(tmp_path))
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
    assert len(features_logged(trials)) == 1
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir() and len(p.name) == 20]) == 1


def test_the_paper_grid_is_exactly_the_papers(tmp_path):
    run_cli("elm_audio", "-m", "hydra/sweeper=paper_grid", *QUICK, cwd=tmp_path)
    _, (parent,), trials = sweep_runs(local_uri(tmp_path))
    points = Counter(
        (p["classifier.kernel"], float(p["classifier.C"]), p["classifier.gamma"] if p["classifier.kernel"] == "rbf" else "-")
        for p in (r.data.params for r in trials)
    )
    gammas = ["0.125", "0.03125", "0.0078125", "0.001953125", "0.00048828125", "0.0001220703125", "auto"]
    expected = {("rbf", c, g) for c in (0.1, 2.0, 8.0, 32.0) for g in gammas} | {("linear", c, "-") for c in (0.1, 2.0, 8.0, 32.0)}
    assert set(points) == expected and set(points.values()) == {1}  # 32 points, each once
    # the ELM's six: test_a_grid_point_a_killed_sweeper_left_running_is_run_again, test_run's paper preset grid


def test_grid_expansion_and_nested_accuracy():
    assert expand_grid([{"a": [1, 2], "b": ["x"]}, {"a": [3]}]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}, {"a": 3}]
    # ParameterGrid's order, the original's tie-break: keys sorted, the first outermost
    grid = expand_grid({"kernel": ["rbf"], "gamma": [0.5, 0.25], "C": [1, 2]})
    assert [(p["C"], p["gamma"]) for p in grid] == [(1, 0.5), (1, 0.25), (2, 0.5), (2, 0.25)]
    runs = [
        {"fold1_val_accuracy": 0.9, "fold1_test_accuracy": 0.5, "fold2_val_accuracy": 0.1, "fold2_test_accuracy": 0.9},
        {"fold1_val_accuracy": 0.2, "fold1_test_accuracy": 1.0, "fold2_val_accuracy": 0.8, "fold2_test_accuracy": 0.7},
    ]
    # fold 1 takes run 0 (val 0.9): 0.5; fold 2 takes run 1 (val 0.8): 0.7
    assert nested_test_score(runs) == pytest.approx(0.6)
    assert nested_test_score([{"test_accuracy": 1.0}]) is None


def test_storage_urls_are_shown_without_their_password():
    from elm_audio.sweeps.storage import storage_label as redact

    assert redact("postgresql://elm:s3cr:et@db.example:5432/optuna") == "postgresql://elm:***@db.example:5432/optuna"
    assert redact("sqlite:///study.db") == "sqlite:///study.db"
    assert redact(None) == "in-memory"


def test_a_bad_storage_names_the_key():
    with pytest.raises(ValueError, match="hydra.sweeper.storage"):
        open_storage("/tmp/study.db")


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path):
    journal = tmp_path / "study.journal"
    args = [
        "-m", "hydra.sweeper.n_trials=6", f"hydra.sweeper.storage=journal:{journal}",
        "hydra.sweeper.study_name=resumable", *QUICK,
    ]  # fmt: skip
    env = {**os.environ, "ELM_AUDIO_CACHE": str(tmp_path / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    seed_empty_store(tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-m", "elm_audio", *args], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    done = 0
    while done < 2 and time.time() < deadline and first.poll() is None:
        time.sleep(0.5)
        if journal.exists():
            try:
                study = optuna.load_study(study_name="resumable", storage=open_storage(f"journal:{journal}"))
                done = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
            except KeyError:  # study not created yet
                pass
    assert first.poll() is None, "the sweep finished before it could be interrupted"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    study = optuna.load_study(study_name="resumable", storage=open_storage(f"journal:{journal}"))
    before = {t.number for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    assert 2 <= len(before) < 6

    proc = run_cli("elm_audio", *args, cwd=tmp_path)
    study = optuna.load_study(study_name="resumable", storage=open_storage(f"journal:{journal}"))
    after = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(after) == 6 and before <= {t.number for t in after}  # the old trials are kept
    assert min(t.number for t in after if t.number not in before) > max(before)  # numbering continues
    # the trial the kill cut short is settled, not left RUNNING; had its run just finished, it is kept
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    kept = re.findall(r"trial \d+ was interrupted after its run \w+ finished", proc.stdout)
    assert f"study resumable already holds {len(before) + len(kept)} completed trials" in proc.stdout
    _, parents, trials = sweep_runs(local_uri(tmp_path))
    assert len(parents) == 2 and len([r for r in trials if r.info.status == "FINISHED"]) == 6
    second = max(parents, key=lambda r: r.info.start_time)
    assert second.data.metrics["n_trials_complete"] == 6


def dead_sweeper() -> dict[str, str]:
    """The identity (processes.identity) a sweeper had, read in a real process that has ended."""
    child = subprocess.run([sys.executable, "-c", IDENTITY], capture_output=True, text=True, check=True)
    return json.loads(child.stdout)


IDENTITY = "import json; from elm_audio.stores import processes; print(json.dumps(processes.identity()))"


def claimed(study: optuna.Study, owner: dict[str, str]) -> optuna.Trial:
    trial = study.ask()
    for key, value in owner.items():
        trial.set_user_attr(f"elm_audio.{key}", value)
    return trial


def test_a_restarted_sweep_settles_the_trials_a_killed_sweeper_left_running(tmp_path):
    """A SIGKILLed sweeper leaves its trial RUNNING in Optuna. On this host, a dead sweeper's
    trial is kept if its MLflow run finished and failed otherwise; trials of live sweepers or
    other hosts may be running and are left alone."""
    storage = f"journal:{tmp_path / 'study.journal'}"
    study = optuna.create_study(study_name="settled", storage=open_storage(storage), direction="maximize")
    gone = dead_sweeper()
    finished, lost = claimed(study, gone), claimed(study, gone)
    live, elsewhere = claimed(study, processes.identity()), claimed(study, {**gone, "host": "another-host"})
    uri = local_uri(tmp_path)
    tracking.connect(uri)
    client = MlflowClient(uri)
    run = client.create_run(
        tracking.experiment_id(tracking.experiment_name("synth"), uri),
        tags={"elm_audio.role": "trial", "sweep_id": "settled", "trial": str(finished.number)},
    )
    client.log_metric(run.info.run_id, "val_accuracy", 0.123)
    client.set_terminated(run.info.run_id, "FINISHED")

    proc = run_cli(
        "elm_audio", "-m", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=settled", *QUICK, cwd=tmp_path,
    )  # fmt: skip
    study = optuna.load_study(study_name="settled", storage=open_storage(storage))
    state = {t.number: t for t in study.get_trials()}
    assert state[finished.number].state == optuna.trial.TrialState.COMPLETE and state[finished.number].value == 0.123
    assert state[lost.number].state == optuna.trial.TrialState.FAIL
    assert state[live.number].state == state[elsewhere.number].state == optuna.trial.TrialState.RUNNING
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3  # 1 kept + 2 run now
    assert f"trial {finished.number} was interrupted after its run {run.info.run_id} finished" in proc.stdout
    assert f"trial {lost.number} was interrupted before its run finished: marked failed" in proc.stdout


TAKE_TWO = """
import os, sys, optuna
from elm_audio.sweeps.storage import open_storage
study = optuna.load_study(study_name="taken", storage=open_storage(sys.argv[1]))
queued, new = study.ask(), study.ask()  # the queued point, then a new trial
print(queued.number, new.number, flush=True)
os._exit(0)  # killed before claiming either, before telling either
"""


def test_a_sweeper_killed_right_after_taking_a_trial_leaves_it_settleable(tmp_path):
    """However a kill is timed, the trial it cuts short names its sweeper: a new trial is created
    claimed, and a queued one (a grid point) names the processes that raced to take it."""
    storage = f"journal:{tmp_path / 'study.journal'}"
    study = optuna.create_study(study_name="taken", storage=open_storage(storage), direction="maximize")
    study.enqueue_trial({"x": 1.0})
    study.enqueue_trial({"x": 2.0})
    child = subprocess.run([sys.executable, "-c", TAKE_TWO, storage], capture_output=True, text=True, check=True)
    queued, new = map(int, child.stdout.split())
    mine = study.ask()  # the other queued point, taken by this live process and not claimed either
    assert {t.number for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))} == {queued, new, mine.number}
    assert sorted(t.number for t in interrupted(study)) == sorted([queued, new])


def test_a_grid_point_a_killed_sweeper_left_running_is_run_again(tmp_path):
    storage = f"journal:{tmp_path / 'grid.journal'}"
    study = optuna.create_study(study_name="grid", storage=open_storage(storage), direction="maximize")
    units = [100, 250, 500, 1200, 1800, 2500]  # the ELM's paper_grid (conf/classifier/elm.yaml)
    point = {"classifier.alpha": 0.0, "classifier.hidden_units": 100}
    study.enqueue_trial(point, user_attrs={"grid_keys": sorted(point)})
    trial = claimed(study, dead_sweeper())
    trial.suggest_categorical("classifier.alpha", [0.0])
    trial.suggest_categorical("classifier.hidden_units", units)

    run_cli(
        "elm_audio", "-m", "hydra/sweeper=paper_grid", "classifier=elm", f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=grid", *QUICK, cwd=tmp_path,
    )  # fmt: skip
    study = optuna.load_study(study_name="grid", storage=open_storage(storage))
    assert study.get_trials()[trial.number].state == optuna.trial.TrialState.FAIL
    done = sorted(t.params["classifier.hidden_units"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert done == units  # every point once, the interrupted one included


@pytest.mark.services
@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries not installed (.ci/run installs them)")
def test_two_servers_share_one_study_on_postgresql_and_one_mlflow_server(tmp_path):
    with postgres(("optuna", "mlflow")) as pg, mlflow_server(f"{pg}/mlflow", tmp_path / "artifacts") as tracking:
        args = [
            "-m", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={pg}/optuna",
            "hydra.sweeper.study_name=shared", f"tracking.uri={tracking}", *QUICK,
        ]  # fmt: skip
        procs = []
        for server in ("a", "b"):  # two "servers": own working folder and feature cache
            cwd = tmp_path / server
            cwd.mkdir()
            env = {**os.environ, "ELM_AUDIO_CACHE": str(cwd / "cache")}
            env.pop("MLFLOW_TRACKING_URI", None)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "elm_audio", *args], cwd=cwd, env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
            )
        outputs = [p.communicate(timeout=600) for p in procs]
        for p, (_, err) in zip(procs, outputs):
            assert p.returncode == 0, err[-3000:]

        study = optuna.load_study(study_name="shared", storage=f"{pg}/optuna")
        complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert sorted(t.number for t in complete) == list(range(6))

        _, parents, trials = sweep_runs(tracking)
        assert len(parents) == 2 and {r.data.tags["sweep_id"] for r in parents} == {"shared"}
        numbers = Counter(r.data.tags["trial"] for r in trials)
        assert sorted(numbers) == [str(n) for n in range(6)] and set(numbers.values()) == {1}
        for parent in parents:
            mine = [r for r in trials if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
            assert len(mine) == 3
            # a parent summarizes the study as it stands when its own trials end
            assert parent.data.metrics["n_trials_complete"] >= 3
        # the server that told the study's last trial summarized after it: both servers' trials
        # (the other may summarize before that tell, yet end after it)
        assert max(p.data.metrics["n_trials_complete"] for p in parents) == 6
