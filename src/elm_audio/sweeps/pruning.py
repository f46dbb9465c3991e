"""Pruning: the pruners ``hydra/sweeper/pruner`` names, and the report a trial's job makes after
each fold so that its pruner can stop it early (`fold_reporter`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
)
from optuna.samplers import RandomSampler

from ..config import ConfigError, shown
from .storage import open_storage


# hydra/sweeper/pruner's options (the node's ``name``), each with the arguments of its Optuna class
PRUNERS: dict[str, type[BasePruner]] = {
    "median": MedianPruner,
    "percentile": PercentilePruner,
    "successive_halving": SuccessiveHalvingPruner,
    "hyperband": HyperbandPruner,
}
NO_PRUNER = "none"


def make_pruner(spec: Mapping[str, Any] | None) -> BasePruner | None:
    """The pruner a ``hydra.sweeper.pruner`` node names, with its arguments; None for ``none``
    (or no node). A name or an argument Optuna refuses is refused in one line."""
    if spec is None:
        return None
    arguments = {k: v for k, v in spec.items() if k != "name"}
    name = spec.get("name")
    if name == NO_PRUNER:
        return None
    if name not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.pruner.name={shown(name)} is not one of {', '.join([*PRUNERS, NO_PRUNER])}")
    try:
        return PRUNERS[name](**arguments)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"hydra.sweeper.pruner ({name}, {shown(arguments)}): {err}") from None


def pruner_label(spec: Mapping[str, Any]) -> str:
    """``median(n_startup_trials=10, n_warmup_steps=1, ...)``: how the summary names the pruner."""
    return f"{spec['name']}(" + ", ".join(f"{k}={shown(v)}" for k, v in spec.items() if k != "name") + ")"


def was_pruned(job: JobReturn) -> bool:
    """Whether a trial's job stopped on its pruner's word (raised optuna.TrialPruned), read
    without ``JobReturn.return_value``, which reports the job to stderr as an error."""
    return job.status is JobStatus.FAILED and isinstance(job._return_value, optuna.TrialPruned)


# Trials of in-memory studies whose jobs run in this process (the basic launcher), by study
# name and trial number: there the job reports to the very trial the sweeper asked for.
_IN_PROCESS: dict[tuple[str, int], optuna.Trial] = {}


@contextmanager
def in_process(study_name: str, trials: Sequence[optuna.Trial]) -> Iterator[None]:
    """Lend ``trials`` to the jobs this process runs while the batch runs (see `fold_reporter`)."""
    for trial in trials:
        _IN_PROCESS[study_name, trial.number] = trial
    try:
        yield
    finally:
        for trial in trials:
            _IN_PROCESS.pop((study_name, trial.number), None)


def fold_reporter(sweep: Mapping[str, Any]) -> Callable[[int, float, bool], bool]:
    """For a trial job whose sweeper prunes (``sweep.pruner`` set): a `protocols.evaluate`
    report that tells Optuna the running objective after each fold (``trial.report``, the
    fold's index as the step) and, while folds remain, whether to stop (``trial.should_prune``).

    The trial is reached as the sweeper left it: lent in this process (an in-memory study, the
    basic launcher), or through the study's storage (``sweep.storage``), from any process or
    node, with the pruner built from the same node as the sweeper's."""
    trial = _IN_PROCESS.get((sweep["study"], int(sweep["trial"])))
    if trial is None:
        storage = open_storage(sweep["storage"])
        study = optuna.load_study(
            study_name=sweep["study"], storage=storage, sampler=RandomSampler(), pruner=make_pruner(sweep["pruner"])
        )  # the sampler is not used: the trial's values were chosen by the sweeper
        study_id = storage.get_study_id_from_name(sweep["study"])
        trial = optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, int(sweep["trial"])))

    def report(step: int, objective: float, last: bool) -> bool:
        trial.report(objective, step)
        return not last and trial.should_prune()

    return report
