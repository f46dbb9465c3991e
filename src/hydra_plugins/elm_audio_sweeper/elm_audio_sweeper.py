"""Hydra's Optuna sweeper, extended for elm_audio.

- ``storage``: an RDB URL or ``journal:<path>``; tables and study are created once, before any
  trial starts, and creation races between servers are retried.
- ``grid``: the paper's grid (scikit-learn param_grid style), run as enqueued trials.
- ``n_trials``: a sweep restarted on a study that already holds completed trials runs only
  the rest (an interrupted sweep resumes); servers started together each run theirs.
- Each trial gets its Optuna trial number, the study name and the sweep's MLflow parent run as
  overrides (``sweep.*``), so trials are child runs of one parent whatever the launcher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


@dataclass
class ElmAudioSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.elm_audio_sweeper.elm_audio_sweeper.ElmAudioSweeper"
    direction: Any = "maximize"
    # scikit-learn param_grid style: a mapping of override -> values, or a list of them
    grid: Any = None


ConfigStore.instance().store(group="hydra/sweeper", name="elm_audio_optuna", node=ElmAudioSweeperConf, provider="elm_audio")


class ElmAudioSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, storage_url: str | None, grid: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage_url = storage_url
        self.grid = grid
        self.sweep_run = None

    def _configure_trials(self, trials, search_space_distributions, fixed_params, fixed_overrides):
        overrides = super()._configure_trials(trials, search_space_distributions, fixed_params, fixed_overrides)
        return [
            tuple(o)
            + (
                f"++sweep.trial={trial.number}",
                f"++sweep.study={trial.study.study_name}",
                f"++sweep.parent_run_id={self.sweep_run.run_id}",
            )
            for o, trial in zip(overrides, trials)
        ]

    def sweep(self, arguments: list[str]) -> None:
        from elm_audio import sweeps

        cfg = self.config
        if self.storage_url and not self.study_name:
            # a stored study needs a name to be shared or resumed: the same command finds it again
            self.study_name = sweeps.default_study_name(cfg)
            log.info("hydra.sweeper.study_name not set: using %s", self.study_name)
        storage = sweeps.open_storage(self.storage_url)
        self.storage = storage
        study = sweeps.load_study(storage, self.study_name, self.sampler, self._get_directions()[0])
        self.study_name = study.study_name
        if self.grid:
            points = sweeps.expand_grid(OmegaConf.to_container(self.grid, resolve=True))
            self.params = OmegaConf.create(sweeps.grid_search_space(points))
            for point in points:
                study.enqueue_trial(point, skip_if_exists=True)
            waiting = study.get_trials(deepcopy=False, states=(sweeps.optuna.trial.TrialState.WAITING,))
            self.n_trials = len(waiting)
        else:
            done = len(sweeps.completed(study))
            if done:
                log.info("study %s already holds %d completed trials", study.study_name, done)
            self.n_trials = max(0, self.n_trials - done)
        space = dict(self.params or {})
        space.update(a.split("=", 1) for a in arguments if "=" in a)
        self.sweep_run = sweeps.SweepRun(cfg, study, self.storage_url, space, self.n_trials)
        failed = True
        try:
            if self.n_trials:
                super().sweep(arguments)
            failed = False
        finally:
            summary = self.sweep_run.finish(failed=failed)
            if summary:
                lines = [f"best trial #{summary['trial']} of study {study.study_name}: val_accuracy {summary['val_accuracy']:.4f}"]
                if summary.get("test_accuracy") is not None:
                    lines.append(f"  its test_accuracy {summary['test_accuracy']:.4f} (run {summary.get('run_id')})")
                if "nested_test_accuracy" in summary:
                    lines.append(f"  nested test accuracy (each fold's best validation trial) {summary['nested_test_accuracy']:.4f}")
                lines.append("  params " + ", ".join(f"{k}={v}" for k, v in summary["params"].items()))
                lines.append(f"  sweep run {self.sweep_run.run_id} in {self.sweep_run.uri}")
                print("\n".join(lines), flush=True)


class ElmAudioSweeper(OptunaSweeper):
    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: Any,
        grid: Any = None,
    ) -> None:
        from elm_audio.sweeps import process_seed

        if storage and sampler.get("seed") is not None:
            sampler = OmegaConf.merge(sampler, {"seed": process_seed(sampler.seed)})
        sampler = instantiate(sampler, _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"))
        self.sweeper = ElmAudioSweeperImpl(
            sampler,
            direction,
            None,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            custom_search_space,
            params,
            storage_url=storage,
            grid=grid,
        )
