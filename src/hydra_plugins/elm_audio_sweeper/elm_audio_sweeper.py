"""elm_audio's Optuna sweeper, on Hydra's public ``Sweeper`` interface and Optuna's ask/tell.

- ``params``: the search space in Hydra's sweep syntax (``choice``, ``interval``, ``tag(log, ...)``);
  ``conditions``: entries sampled only when others take given values (gamma only for rbf).
- ``storage``: an RDB URL or ``journal:<path>``; the study is created once, before any trial
  starts (creation races between servers are retried), and owned by this sweeper.
- ``grid``: a scikit-learn param_grid (the paper's), run as enqueued trials in ParameterGrid's order.
- ``n_trials``: a sweep restarted on a study that already holds completed (or pruned) trials
  runs only the rest (an interrupted sweep resumes); servers started together each run theirs.
  Trials an interrupted sweeper left RUNNING on this host are settled first: kept if their MLflow
  run finished (pruned if it was), failed (a grid point: queued again) if not.
- With hydra-submitit-launcher, a trial whose SLURM job died (cancelled, killed, past its time
  limit) fails with the job id and log paths (user attribute ``fail_reason``), its MLflow run is
  ended as KILLED, and the sweep goes on: a dead job does not count against ``max_failure_rate``.
- Each trial gets its Optuna trial number, the study name and the sweep's MLflow parent run as
  overrides (``sweep.*``), so trials are child runs of one parent whatever the launcher.
- ``pruner`` (the ``hydra/sweeper/pruner`` group: median, percentile, successive_halving,
  hyperband, none): a pruning sweep also hands each trial the pruner and the storage
  (``sweep.pruner``, ``sweep.storage``, interpolations of this node's, so no password is
  repeated in a job's overrides); the trial reports its running val_accuracy after each fold and
  stops when the pruner says so (``sweeps.pruning.fold_reporter``), and is told PRUNED here (its value:
  its last report). An in-memory study is reached only from this process (the basic launcher);
  with a launcher that runs trials elsewhere and no storage, pruning is off, said in one line.
- Ctrl-C or SIGTERM kills the joblib launcher's workers, ends the trial runs they left RUNNING
  and the parent run as KILLED, settles the trials in flight (failed unless their run finished;
  SLURM jobs, which run on, are left to a restart) and exits with one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
import optuna
from hydra_plugins.hydra_optuna_sweeper.config import TPESamplerConfig  # registers hydra/sweeper/sampler too
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


# hydra/sweeper/pruner's options. Their defaults kept every seed's best trial in
# benchmarks/pruning.py (docs/sweeps.md, "Pruning"), where cuts after one or two folds sometimes lost it.


@dataclass
class MedianPrunerConf:
    """Stop a trial whose running val_accuracy (its best over the folds so far) is below the
    median of the complete trials' at the same fold; not before ``n_startup_trials`` are
    complete nor before fold ``n_warmup_steps`` (0-based: 2 is the third)."""

    name: str = "median"
    n_startup_trials: int = 5
    n_warmup_steps: int = 2
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConf(MedianPrunerConf):
    """As median, at another percentile: ``percentile=25`` keeps the top quarter."""

    name: str = "percentile"
    percentile: float = 25.0


@dataclass
class SuccessiveHalvingPrunerConf:
    """Keeps the top 1/``reduction_factor`` of the trials at folds min_resource x reduction_factor^k
    (here after folds 3, 7, 19 ...: 0-based steps 2, 6, 18)."""

    name: str = "successive_halving"
    min_resource: Any = 2  # or auto: from the first complete trial's folds (1 below 100 folds)
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    """Successive halving in several brackets, each waiting longer before its first cut."""

    name: str = "hyperband"
    min_resource: int = 1
    max_resource: Any = "auto"  # folds, or auto (the folds of the first complete trial)
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class NoPrunerConf:
    name: str = "none"


for _conf in (MedianPrunerConf, PercentilePrunerConf, SuccessiveHalvingPrunerConf, HyperbandPrunerConf, NoPrunerConf):
    ConfigStore.instance().store(group="hydra/sweeper/pruner", name=_conf.name, node=_conf, provider="elm_audio")


@dataclass
class ElmAudioSweeperConf:
    _target_: str = "hydra_plugins.elm_audio_sweeper.elm_audio_sweeper.ElmAudioSweeper"
    sampler: Any = field(default_factory=TPESamplerConfig)
    direction: str = "maximize"
    storage: Any = None
    study_name: Any = None
    n_trials: int = 20
    n_jobs: int = 1  # trials per batch; with hydra/launcher=joblib they run in parallel
    max_failure_rate: float = 0.0
    params: Any = None  # override -> Hydra sweep syntax
    conditions: Any = None  # override -> {other override: value it must take}
    grid: Any = None  # scikit-learn param_grid style: a mapping of override -> values, or a list of them
    pruner: Any = None  # hydra/sweeper/pruner's node: name and arguments; None or name none: no pruning


ConfigStore.instance().store(group="hydra/sweeper", name="elm_audio_optuna", node=ElmAudioSweeperConf, provider="elm_audio")


class ElmAudioSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: Any = None,
        conditions: Any = None,
        grid: Any = None,
        pruner: Any = None,
    ) -> None:
        self.sampler_config = sampler
        self.direction = direction
        self.storage_url = str(storage) if storage else None
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = max(1, int(n_jobs))
        self.max_failure_rate = max_failure_rate
        self.params = params
        self.conditions = conditions
        self.grid = grid
        self.pruner = OmegaConf.to_container(pruner, resolve=True) if pruner is not None else None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def _sampler(self):
        from elm_audio.sweeps.storage import process_seed

        sampler = self.sampler_config
        if self.storage_url and sampler.get("seed") is not None:
            sampler = OmegaConf.merge(sampler, {"seed": process_seed(sampler.seed)})
        return instantiate(sampler, _execution_whitelist_=("optuna.samplers.*",))

    def sweep(self, arguments: list[str]) -> None:
        from elm_audio.config import ConfigError
        from elm_audio.datasets import DatasetError
        from elm_audio.stores.redaction import redact
        from elm_audio.sweeps.interruption import sigterm_interrupts

        try:
            with sigterm_interrupts():
                self._sweep(arguments)
        except (ConfigError, DatasetError) as err:  # a storage, store or dataset that cannot be used: one line
            raise SystemExit(f"elm_audio: {redact(err)}") from None
        except KeyboardInterrupt:  # before the parent run existed, or a second one during the clean-up
            raise SystemExit("elm_audio: interrupted") from None

    def _sweep(self, arguments: list[str]) -> None:
        from elm_audio.sweeps.interruption import is_interruption
        from elm_audio.sweeps.parent import SweepRun, header_line, look_lines, summary_lines
        from elm_audio.settings.settings import kind_entries, run_names
        from elm_audio.sweeps.space import SearchSpace, expand_grid
        from elm_audio.sweeps.storage import default_study_name, open_storage, open_study

        cfg = self.config
        conditions = OmegaConf.to_container(self.conditions, resolve=True) if self.conditions else {}
        given = dict(a.split("=", 1) for a in arguments if "=" in a)
        grid_points = None
        if self.grid:
            grid_points = expand_grid(OmegaConf.to_container(self.grid, resolve=True))
            space = SearchSpace.from_grid(grid_points, given, conditions)
            entries = {k: "choice(" + ", ".join(map(str, d.choices)) + ")" for k, d in space.distributions.items()}
        else:
            entries = {**(OmegaConf.to_container(self.params, resolve=True) or {}), **kind_entries(cfg), **given}
            space = SearchSpace.parse(entries, conditions)
        if not self.study_name:
            # a stored study needs a name to be shared or resumed: the same command finds it again;
            # an in-memory one is named the same way, with when it started (its sweep_id in MLflow)
            self.study_name = default_study_name(run_names(cfg), stored=bool(self.storage_url))
        pruner = self._pruner(grid_points is not None)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the header below names the study
        storage = open_storage(self.storage_url)
        study = open_study(storage, self.study_name, self._sampler(), self.direction, pruner)
        sweep_run = SweepRun(cfg.tracking.uri, run_names(cfg), study, self.storage_url, entries, self.pruner if pruner else None)
        status = "FAILED"
        try:
            to_run = self._trials_to_run(study, sweep_run, grid_points)
            sweep_run.log_plan(to_run)
            print(header_line(study.study_name, self.storage_url, to_run, sweep_run), flush=True)
            self._run_trials(study, space, grid_points is not None, to_run, sweep_run, pruning=pruner is not None)
            status = "FINISHED"
        except BaseException as err:
            if not is_interruption(err):
                raise
            status = "KILLED"
            raise SystemExit(f"elm_audio: {self._stop(study, sweep_run)}") from None
        finally:
            summary = sweep_run.finish(status)
            if summary and status != "KILLED":  # an interrupted sweep says one line; its run holds the summary
                lines = summary_lines(summary, study.study_name, sweep_run)
                lines += look_lines(sweep_run, self.storage_url, study.study_name)
                print("\n".join(lines), flush=True)

    def _pruner(self, from_grid: bool):
        """The study's pruner (None: no pruning), refused for a grid, which runs every point in
        full; off, in one printed line, where the jobs cannot reach an in-memory study."""
        from elm_audio.config import ConfigError
        from elm_audio.sweeps.pruning import make_pruner

        pruner = make_pruner(self.pruner)
        if pruner is None:
            return None
        if from_grid:
            raise ConfigError(
                f"hydra/sweeper/pruner={self.pruner['name']}: a grid sweep (paper_grid) runs every point on every "
                "fold; it takes no pruner (hydra/sweeper/pruner=none)"
            )
        if not self.storage_url and not self._in_process():
            print(
                f"sweep: pruning off: the study is in memory and {type(self.launcher).__name__} runs trials in "
                "other processes, which cannot reach it; set hydra.sweeper.storage (sqlite:///study.db, "
                "journal:<file>) to prune, or hydra/sweeper/pruner=none to say so",
                flush=True,
            )
            return None
        return pruner

    def _in_process(self) -> bool:
        """Whether the launcher runs each trial in this process (Hydra's basic launcher)."""
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        return isinstance(self.launcher, BasicLauncher)

    def _stop(self, study, sweep_run) -> str:
        """The clean-up after Ctrl-C or SIGTERM (the caller ends the parent run): the joblib
        workers killed, the trial runs they left RUNNING ended as KILLED, and the trials in flight
        settled, so that a restart on a stored study runs them again. Returns the line to exit with."""
        from elm_audio.sweeps import cluster
        from elm_audio.sweeps.interruption import stop_workers
        from elm_audio.sweeps.trials import own_running

        stop_workers(self.launcher)
        ended = sweep_run.end_gone_runs()
        # SLURM jobs run on without their sweeper: a restart settles their trials, keeping the
        # result of a run that finished
        in_flight = [] if cluster.is_submitit(self.launcher) else own_running(study)
        for line in sweep_run.settle(in_flight):
            log.info(line)
        failed = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
        numbers = ", ".join(str(t.number) for t in in_flight if t.number in failed)
        return (
            f"interrupted; sweep run {sweep_run.run_id} ended as KILLED"
            + (f", with {len(ended)} trial run(s) of its workers" if ended else "")
            + (f"; trial(s) {numbers} marked failed" if numbers else "")
        )

    def _trials_to_run(self, study, sweep_run, grid_points: list[dict[str, Any]] | None) -> int:
        """Settle what an interrupted sweeper left behind, then count what is left to run: the
        grid's waiting points, or n_trials less the trials the study already completed or pruned."""
        from elm_audio.sweeps.trials import completed, pruned

        for line in sweep_run.settle_interrupted():
            log.info(line)
        if grid_points is not None:
            for point in grid_points:
                study.enqueue_trial(point, user_attrs={"grid_keys": sorted(point)}, skip_if_exists=True)
            return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        done, stopped = len(completed(study)), len(pruned(study))
        if done or stopped:  # a pruned trial was run: it counts against n_trials as a complete one does
            log.info("study %s already holds %d completed trials%s", study.study_name, done, f" and {stopped} pruned" if stopped else "")
        return max(0, self.n_trials - done - stopped)

    def _run_trials(self, study, space, from_grid: bool, to_run: int, sweep_run, pruning: bool) -> None:
        from elm_audio.sweeps import cluster
        from elm_audio.sweeps.pruning import in_process, was_pruned
        from elm_audio.sweeps.trials import claim

        parent_run_id = sweep_run.run_id
        # what a pruning trial needs to reach its study: the pruner and the storage, read from
        # this sweeper's own config in the job (an in-memory study's trials are lent instead)
        reach = []
        if pruning:
            reach.append("++sweep.pruner=${hydra:sweeper.pruner}")
            if self.storage_url:
                reach.append("++sweep.storage=${hydra:sweeper.storage}")
        lend = pruning and not self.storage_url

        while to_run > 0:
            trials = [study.ask() for _ in range(min(self.n_jobs, to_run))]
            batch = []
            for trial in trials:
                claim(trial)
                # an enqueued grid point sets only its own keys (the linear kernel has no gamma)
                only = trial.user_attrs["grid_keys"] if from_grid else None
                values = space.suggest(trial, only)
                batch.append(
                    [f"{k}={v}" for k, v in values.items()]
                    + [
                        f"++sweep.trial={trial.number}",
                        f"++sweep.study={study.study_name}",
                        f"++sweep.parent_run_id={parent_run_id}",
                    ]
                    + reach
                )
            if cluster.is_submitit(self.launcher):
                returns = cluster.launch_each(self.launcher, batch, self.job_idx)
            else:
                with in_process(study.study_name, trials if lend else []):
                    returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failures = []
            for trial, ret in zip(trials, returns):
                if was_pruned(ret):  # its value for the sampler: its last report (Optuna's convention)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    continue
                try:
                    study.tell(trial, float(ret.return_value))
                except cluster.JobDied as err:  # killed from outside: not the trial's doing, the sweep goes on
                    self._fail(study, trial, err)
                    for run_id in sweep_run.end_lost_run(trial.number):
                        log.warning("trial %d: its MLflow run %s ended as KILLED", trial.number, run_id)
                except Exception as err:  # the job's own error, re-raised by JobReturn
                    self._fail(study, trial, err)
                    failures.append(ret)
            if len(failures) / len(returns) > self.max_failure_rate:
                for ret in failures:
                    ret.return_value  # raises the failed job's own error, with its traceback
            to_run -= len(trials)

    @staticmethod
    def _fail(study, trial, err: Exception) -> None:
        import optuna

        trial.set_user_attr("fail_reason", str(err).splitlines()[0][:1000] if str(err) else type(err).__name__)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, err)
