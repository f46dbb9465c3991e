"""Sweeps that stop hopeless trials early: a trial reports its running val_accuracy after each
fold, its pruner stops it, the study holds it PRUNED, MLflow its folds so far (tagged, without
the run's aggregates), the sweep counts it apart and the report leaves it out."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from helpers.runs import local_uri, logged_runs, sweep_here
from omegaconf import OmegaConf

from elm_audio.config import CONFIG_DIR, ConfigError
from elm_audio.datasets.index import Clip, ClipIndex
from elm_audio.evaluation.protocols import evaluate, make_splits
from elm_audio.report.build import missing_notes
from elm_audio.report.collect import load_runs
from elm_audio.report.stats import select_best, summarize
from elm_audio.sweeps.storage import open_storage

# Five folds of the built-in dataset; a linear SVM's running val_accuracy is 0.71 after one fold
# and 0.57 after two with C=1, 0.29 after both with C=1e-6 or 1e-5 (hopeless).
FOLDS = [
    "dataset.clips_per_class=6", "dataset.duration=2.0", "dataset.n_folds=5",
    "extract.progress=false", "extract.num_workers=0", "classifier.kernel=linear",
]  # fmt: skip
# the median pruner from the first complete trial on, and from the second fold
PRUNE_AFTER_TWO = ["hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=1"]
FOLD_METRIC = re.compile(r"fold(\d+)_(val|test)_accuracy")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """One feature cache for the module's sweeps: the features are extracted once."""
    return f"cache.dir={tmp_path_factory.mktemp('pruning_cache')}"


def trial_runs(cwd):
    _, runs = logged_runs(cwd)
    parents = [r for r in runs if r.data.tags.get("elm_audio.role") == "sweep"]
    return parents, sorted((r for r in runs if r.data.tags.get("elm_audio.role") == "trial"), key=lambda r: int(r.data.tags["trial"]))


def folds_fitted(run) -> list[str]:
    return sorted({m[1] for m in map(FOLD_METRIC.fullmatch, run.data.metrics) if m})


def assert_recorded_as_pruned(run) -> None:
    """Finished, tagged, the metrics of the folds it fitted and none of the run's aggregates."""
    assert run.info.status == "FINISHED" and run.data.tags["pruned"] == "true"
    assert run.data.tags["pruned_after_fold"] == "fold2" and folds_fitted(run) == ["1", "2"]
    assert {f"fold{k}_{s}_accuracy" for k in (1, 2) for s in ("val", "test")} <= set(run.data.metrics)
    assert not {"val_accuracy", "test_accuracy", "test_accuracy_std"} & set(run.data.metrics)


@pytest.mark.slow
def test_a_stored_study_holds_the_pruned_trials_and_mlflow_their_folds_so_far(tmp_path: Path, cache: str):
    """The storage path (the one joblib and SLURM trials take): each trial reports to the
    journal, and its pruner, built in the job from the sweeper's node, stops it."""
    storage = f"journal:{tmp_path / 'study.journal'}"
    study = optuna.create_study(study_name="pruned", storage=open_storage(storage), direction="maximize")
    # another server's complete trial, at 0.5 after two folds: the hopeless trials fall below it
    study.add_trial(optuna.trial.create_trial(value=0.45, intermediate_values={0: 0.5, 1: 0.5, 2: 0.45, 3: 0.45, 4: 0.45}))
    printed = sweep_here(
        tmp_path, "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=pruned",
        "classifier.C=choice(1e-6, 1e-5)", *PRUNE_AFTER_TWO, *FOLDS, cache,
    )  # fmt: skip
    study = optuna.load_study(study_name="pruned", storage=open_storage(storage))
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert len(pruned) == 3 and len(study.trials) == 4
    for trial in pruned:  # reported after each fold, stopped after the second; its value: its last report
        assert sorted(trial.intermediate_values) == [0, 1] and trial.value == trial.intermediate_values[1]
    (parent,), runs = trial_runs(tmp_path)
    assert len(runs) == 3
    for run in runs:
        assert_recorded_as_pruned(run)
    assert sum(len(folds_fitted(r)) for r in runs) == 6 < 3 * 5
    assert parent.data.metrics["n_trials_pruned"] == 3
    assert "  4 trials: 1 complete, 3 pruned; pruner median(n_startup_trials=1, " in printed
    assert re.search(r"^trial \d: pruned after fold2 \(2 of 5 folds\), val_accuracy so far 0\.2857 ", printed, re.M)


@pytest.mark.slow
def test_an_in_memory_sweep_prunes_in_its_own_process_and_the_report_leaves_pruned_trials_out(tmp_path: Path, cache: str):
    """The default: no storage, trials in the sweeper's process (the basic launcher), which lends
    them each trial. Seeded TPE draws C=1e-6 for trials 0, 2 and 3 and C=1 for 1 and 4; a
    hopeless trial is pruned once a good one is complete (median of 0.29 and 0.57)."""
    printed = sweep_here(
        tmp_path, "hydra.sweeper.n_trials=5", "classifier.C=choice(1.0, 1e-6)", *PRUNE_AFTER_TWO, *FOLDS, cache
    )
    _, runs = trial_runs(tmp_path)
    assert [r.data.params["classifier.C"] for r in runs] == ["1e-06", "1.0", "1e-06", "1e-06", "1.0"]
    pruned = [r for r in runs if r.data.tags.get("pruned") == "true"]
    assert [r.data.tags["trial"] for r in pruned] == ["2", "3"]
    for run in pruned:
        assert_recorded_as_pruned(run)
    for run in (r for r in runs if r not in pruned):
        assert folds_fitted(run) == ["1", "2", "3", "4", "5"] and "val_accuracy" in run.data.metrics
    assert sum(len(folds_fitted(r)) for r in runs) < len(runs) * 5
    assert "  5 trials: 3 complete, 2 pruned; pruner median(" in printed
    handed = [p.read_text() for p in tmp_path.glob("multirun/*/*/*/.hydra/overrides.yaml")]
    assert len(handed) == 5 and all("++sweep.pruner=${hydra:sweeper.pruner}" in text for text in handed)
    report = load_runs(local_uri(tmp_path), runs[0].info.experiment_id)
    assert sorted(report["run_id"]) == sorted(r.info.run_id for r in runs if r not in pruned)
    assert report.attrs["n_pruned"] == 2
    notes = missing_notes(report, summarize(select_best(report)))
    assert "2 pruned trial(s) (stopped after some folds) were left out: they are no finished result." in notes


@pytest.mark.slow
def test_pruning_off_prunes_nothing(tmp_path: Path, cache: str):
    """The same draws as above (trial 2 hopeless after a good one), no pruner."""
    printed = sweep_here(
        tmp_path, "hydra.sweeper.n_trials=3", "classifier.C=choice(1.0, 1e-6)", "hydra/sweeper/pruner=none", *FOLDS, cache
    )
    _, runs = trial_runs(tmp_path)
    assert [r.data.params["classifier.C"] for r in runs] == ["1e-06", "1.0", "1e-06"]
    assert all(folds_fitted(r) == ["1", "2", "3", "4", "5"] and "pruned" not in r.data.tags for r in runs)
    assert "\n  3 trials: 3 complete\n" in printed and "pruned" not in printed
    handed = [p.read_text() for p in tmp_path.glob("multirun/*/*/*/.hydra/overrides.yaml")]
    assert len(handed) == 3 and not any("sweep.pruner" in text for text in handed)  # no trial reports


def test_evaluate_reports_each_fold_in_the_protocols_order_and_stops_when_told():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b"], 20)
    features = rng.standard_normal((40, 3)) + (labels == "b")[:, None]
    folds = [3, 1, 4, 2] * 10  # clips listed out of fold order: the splits follow the fold numbers
    index = ClipIndex("toy", [Clip(f"c{i}", f"c{i}.wav", str(lab), fold=k) for i, (lab, k) in enumerate(zip(labels, folds))], "folds")
    splits = make_splits(index)
    assert [s.name for s in splits] == ["fold1", "fold2", "fold3", "fold4"]
    seen = []

    def stop_at_second(step: int, objective: float, last: bool) -> bool:
        seen.append((step, objective, last))
        return True

    stopped = evaluate(LogisticRegression, features, labels, splits, report=stop_at_second)
    assert stopped.stopped and stopped.planned == 4 and [s.name for s in stopped.splits] == ["fold1"]
    assert seen == [(0, stopped.splits[0].val_score, False)]
    assert set(stopped.metrics) == {"fit_seconds", "fold1_val_accuracy", "fold1_test_accuracy"}
    seen.clear()
    full = evaluate(LogisticRegression, features, labels, splits, report=lambda step, objective, last: seen.append(objective) or last)
    assert not full.stopped and len(full.splits) == 4  # a "stop" after the last fold stops nothing
    assert seen[-1] == full.metrics["val_accuracy"] and seen[0] == full.splits[0].val_score


def test_the_pruner_is_chosen_by_name_and_bad_values_are_refused_in_one_line():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from elm_audio.settings.unknown_keys import check
    from elm_audio.sweeps.pruning import make_pruner

    def pruner_node(*overrides: str):
        with initialize_config_dir(str(CONFIG_DIR)):
            return hydra_compose("config", list(overrides), return_hydra_config=True).hydra.sweeper.pruner

    search, grid, hyperband = pruner_node(), pruner_node("hydra/sweeper=paper_grid"), pruner_node("hydra/sweeper/pruner=hyperband")
    pruner = make_pruner(search)
    assert isinstance(pruner, optuna.pruners.MedianPruner) and (search.n_startup_trials, search.n_warmup_steps) == (5, 2)
    assert make_pruner(grid) is None and isinstance(make_pruner(hyperband), optuna.pruners.HyperbandPruner)
    with pytest.raises(ConfigError) as refused:
        make_pruner({"name": "medain"})
    assert str(refused.value) == "hydra.sweeper.pruner.name=medain is not one of median, percentile, successive_halving, hyperband, none"
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.pruner \(percentile, \{percentile: 150\}\): .*percentile") as refused:
        make_pruner({"name": "percentile", "percentile": 150})
    assert "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="did you mean median"):
        check(["hydra/sweeper/pruner=medain"])


def test_a_grid_is_never_pruned_and_jobs_that_cannot_reach_the_study_say_so(capsys):
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

    from hydra_plugins.elm_audio_sweeper.elm_audio_sweeper import (
        ElmAudioSweeper,
        MedianPrunerConf,
    )

    def sweeper(storage: str | None, launcher) -> ElmAudioSweeper:
        made = ElmAudioSweeper(None, "maximize", storage, None, 4, 2, 0.0, pruner=OmegaConf.structured(MedianPrunerConf))
        made.launcher = launcher
        return made

    with pytest.raises(ConfigError, match=r"^hydra/sweeper/pruner=median: a grid sweep \(paper_grid\) .* takes no pruner"):
        sweeper(None, BasicLauncher())._pruner(from_grid=True)
    assert isinstance(sweeper(None, BasicLauncher())._pruner(False), optuna.pruners.MedianPruner)  # lent in process
    assert isinstance(sweeper("sqlite:///study.db", JoblibLauncher())._pruner(False), optuna.pruners.MedianPruner)
    assert not capsys.readouterr().out
    assert sweeper(None, JoblibLauncher())._pruner(False) is None
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("sweep: pruning off: the study is in memory and JoblibLauncher runs trials in other processes")
