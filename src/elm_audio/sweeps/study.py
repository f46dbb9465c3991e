"""Optuna sweeps: shared storages, the paper's grid, and the sweep's parent run in MLflow.

Used by the Hydra sweeper plugin ``hydra_plugins.elm_audio_sweeper``; nothing here runs a trial.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import optuna
import sqlalchemy
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.core.utils import JobReturn, JobStatus
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
)
from optuna.samplers import RandomSampler
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._file import get_lock_file
from optuna.trial import TrialState
from sklearn.model_selection import ParameterGrid
from sqlalchemy.exc import SQLAlchemyError

from ..config import ConfigError, shown
from ..evaluation.scoring import objective, primary
from ..stores import processes, tracking
from ..stores.redaction import redact, redact_value

log = logging.getLogger(__name__)
T = TypeVar("T")
JOURNAL_PREFIX = "journal:"


def retry(what: str, action: Callable[[], T], attempts: int = 6) -> T:
    """Several processes creating the same tables or study at the same moment race; the losers
    see integrity or 'already exists' errors. Trying again finds what the winner created. A
    ValueError (a damaged journal, a bad URL) is no race: it is raised at once."""
    for attempt in range(attempts):
        try:
            return action()
        except ValueError:
            raise
        except Exception as err:  # sqlalchemy, optuna and mlflow raise their own kinds
            if attempt == attempts - 1:
                raise
            log.info("%s: %s; trying again", what, err)
            time.sleep(0.3 * 2**attempt)
    raise AssertionError("unreachable")


class StorageError(ConfigError):
    """An Optuna storage that cannot be used; the message names it and says what to do."""


# How long a database server may take to accept a connection before the sweep gives up.
CONNECT_SECONDS = 10


def open_storage(url: str | None) -> BaseStorage:
    """None (in memory, this process only), an RDB URL (sqlite:///..., postgresql://...), or
    ``journal:<path>``, a journal file on a disk every server sees."""
    if url is None or str(url) == "":
        return InMemoryStorage()
    url = str(url)
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path))
        repaired = drop_torn_record(path)
        if repaired:
            log.warning("hydra.sweeper.storage=%s: %s", url, repaired)
        try:
            return ClaimingJournalStorage(backend)  # reads the whole journal
        except ValueError as err:
            raise damaged_journal(url, err) from None
    if "://" not in url:
        raise StorageError(
            f"hydra.sweeper.storage={storage_label(url)!r}: expected an RDB URL (sqlite:///study.db, "
            "postgresql://user:pw@host/db) or journal:<path to a file on a shared disk>"
        )
    engine_kwargs = connect_timeout(url)
    try:  # a server that does not answer fails now, in seconds, not after the retries below
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
        with engine.connect():
            pass
        engine.dispose()
    except (SQLAlchemyError, ImportError, ValueError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise StorageError(
            f"hydra.sweeper.storage={storage_label(url)}: cannot connect ({redact(reason)}); "
            "start the database server, or fix the URL (host, port, user, password, database)"
        ) from None
    return retry("creating the Optuna tables", lambda: ClaimingRDBStorage(url, engine_kwargs=engine_kwargs))


class ClaimsTrials:
    """Storage side of `claim`: a trial this process asks for names its sweeper from its first
    write, so that no kill, however timed, leaves a RUNNING trial no later sweep can settle.

    - A new trial (``study.ask()`` with nothing queued) is created claimed: the claim rides in
      the creating write.
    - A queued trial (a grid point) is taken by a second write (WAITING to RUNNING) that other
      servers may race for. Before it, this process adds itself to the trial's claimants; the
      winner then claims it as its owner (`claim`). A trial taken but not yet claimed is
      therefore settled once all its claimants are proven gone, the one that took it among them.
    """

    def create_new_trial(self, study_id: int, template_trial: optuna.trial.FrozenTrial | None = None) -> int:
        if template_trial is None:
            template_trial = optuna.trial.FrozenTrial(
                number=-1, trial_id=-1, state=optuna.trial.TrialState.RUNNING, value=None,
                datetime_start=datetime.now(timezone.utc), datetime_complete=None, params={}, distributions={},
                user_attrs=tracking.process_tags(), system_attrs={}, intermediate_values={},
            )  # fmt: skip
        return super().create_new_trial(study_id, template_trial)

    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState, values=None) -> bool:
        if state == optuna.trial.TrialState.RUNNING and self.get_trial(trial_id).state == optuna.trial.TrialState.WAITING:
            identity = processes.identity()
            self.set_trial_user_attr(trial_id, CLAIMANT_PREFIX + claimant_key(identity), identity)
        return super().set_trial_state_values(trial_id, state, values)


class ClaimingJournalStorage(ClaimsTrials, JournalStorage):
    pass


class ClaimingRDBStorage(ClaimsTrials, RDBStorage):
    pass


CLAIMANT_PREFIX = "elm_audio.claimant."


def claimant_key(identity: Mapping[str, str]) -> str:
    """One user attribute per process that tried to take a queued trial."""
    return hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()[:16]


def damaged_journal(where: str, err: ValueError) -> StorageError:
    return StorageError(
        f"hydra.sweeper.storage={where}: the journal is damaged ({err}); restore it from a copy, or start "
        "a new study (another hydra.sweeper.storage or study_name)"
    )


def connect_timeout(url: str) -> dict[str, Any]:
    """PostgreSQL and MySQL drivers wait for minutes on a host that does not answer."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in parsed.query:
        return {"connect_args": {"connect_timeout": CONNECT_SECONDS}}
    return {}


def drop_torn_record(path: Path) -> str | None:
    """A sweeper killed while appending to a journal leaves its last line cut; Optuna reads past
    it, but the next record is appended to the cut line and the journal no longer loads. The cut
    record (of a trial that never ran) is removed, under the journal's own lock so that no writer
    is halfway through. Returns what was done, or None."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with get_lock_file(JournalFileSymlinkLock(str(path))):
        with path.open("rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            tail_start = max(0, size - 1_048_576)  # records are small: the tail holds the last two
            fh.seek(tail_start)
            tail = fh.read()
            body, newline, last = tail.rstrip(b"\n").rpartition(b"\n")
            if tail.endswith(b"\n") and _is_record(last):
                return None
            keep = tail_start + len(body) + len(newline)
            fh.truncate(keep)
    return f"its last record was cut off (a sweeper killed while writing it): removed it ({size - keep} bytes)"


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def storage_label(url: str | None) -> str:
    """A storage URL without its password, for logs and MLflow."""
    return redact_value(url) if url else "in-memory"


def default_study_name(cfg, stored: bool = True) -> str:
    """A stored study is named after what it runs, so the same command finds it again; an
    in-memory one also after when it started, so two sweeps' trials never share a sweep_id."""
    name = (
        f"elm_audio-{cfg.dataset.name}-{cfg.frontend.name}-{cfg.feature_size.name}-"
        f"{cfg.classifier.name}-seed{cfg.seed}-{cfg.protocol.mode}"
    )
    return name if stored else f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"


def header_line(study_name: str, storage_url: str | None, n_trials: int, sweep_run: "SweepRun") -> str:
    """What a sweep prints before its trials, which then print one line each."""
    return f"sweep: {n_trials} trial(s) of study {study_name} ({storage_label(storage_url)}), parent run {sweep_run.run_id}"


def open_study(
    storage: BaseStorage, name: str | None, sampler, direction: str, pruner: BasePruner | None = None
) -> optuna.Study:
    """Create the study, or load it where the storage holds it: once per sweep. Its ``pruner``
    matters to the sampler too (Hyperband's brackets); trials ask their own (`fold_reporter`)."""
    return retry(
        "creating the Optuna study",
        lambda: optuna.create_study(
            storage=storage, study_name=name, sampler=sampler, pruner=pruner, direction=direction, load_if_exists=True
        ),
    )


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


def process_seed(seed: int | None) -> int | None:
    """Servers sharing a study must not draw the same trials: mix the host and process into the
    sampler's seed (a shared sweep cannot be replayed exactly anyway)."""
    if seed is None:
        return None
    return (int(seed) * 1_000_003 + hash((socket.gethostname(), os.getpid()))) % (2**31 - 1)


def expand_grid(blocks: Sequence[Mapping[str, Sequence[Any]]] | Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """scikit-learn's param_grid, in ParameterGrid's order (blocks in turn; within a block the
    keys sorted, the first outermost), which is the order the original's GridSearchCV broke
    ties in: trials run in this order and the earliest of equally good ones is the best."""
    return [dict(point) for point in ParameterGrid([dict(b) for b in ([blocks] if isinstance(blocks, Mapping) else blocks)])]


def _optuna_value(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def distribution(override: Override) -> BaseDistribution | None:
    """The Optuna distribution of a Hydra sweep override (choice, range, interval, with the
    ``log`` tag for log scales); None for a plain value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([_optuna_value(v) for v in override.sweep_iterator(transformer=Transformer.encode)])
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    if isinstance(value, RangeSweep):
        return CategoricalDistribution([_optuna_value(v) for v in override.sweep_iterator(transformer=Transformer.encode)])
    raise ValueError(f"{override.input_line}: not a sweep the Optuna sweeper can search")


@dataclass
class SearchSpace:
    """What each trial sets: distributions to sample (define-by-run, so an entry can depend on
    another's value) and fixed overrides. ``conditions`` maps an entry to the values other
    entries must take for it to be sampled, e.g. gamma only for the rbf kernel."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]
    conditions: dict[str, dict[str, Any]]

    @classmethod
    def parse(cls, entries: Mapping[str, Any], conditions: Mapping[str, Mapping[str, Any]] | None = None) -> "SearchSpace":
        overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in entries.items()])
        distributions, fixed = {}, {}
        for override in overrides:
            key = override.get_key_element()
            dist = distribution(override)
            if dist is None:
                fixed[key] = override.get_value_element_as_str()
            else:
                distributions[key] = dist
        conditions = {k: dict(v) for k, v in (conditions or {}).items()}
        for key, needs in conditions.items():
            unknown = [n for n in needs if n not in distributions and n not in fixed]
            if unknown:
                raise ValueError(f"hydra.sweeper.conditions.{key} names {', '.join(unknown)}, not in the search space")
        return cls(distributions, fixed, conditions)

    @classmethod
    def from_grid(cls, points: list[dict[str, Any]], given: Mapping[str, str], conditions=None) -> "SearchSpace":
        """The grid's values as choices; ``given`` (the command line's other overrides) fixed."""
        fixed = cls.parse(given)
        if fixed.distributions:
            raise ValueError(
                f"{', '.join(fixed.distributions)}: a grid sweep runs the grid's points only; "
                "fix these on the command line, or sweep them with hydra/sweeper=search"
            )
        choices: dict[str, list] = {}
        for point in points:
            for key, value in point.items():
                if value not in choices.setdefault(key, []):
                    choices[key].append(value)
        return cls({k: CategoricalDistribution(v) for k, v in choices.items()}, fixed.fixed, dict(conditions or {}))

    def applies(self, key: str, chosen: Mapping[str, Any]) -> bool:
        return all(str(chosen.get(k)) == str(v) for k, v in self.conditions.get(key, {}).items())

    def suggest(self, trial: optuna.Trial, only: Sequence[str] | None = None) -> dict[str, Any]:
        """Sample this trial's values, entry by entry, skipping entries whose conditions the
        values chosen so far do not meet (and, for a grid point, entries it does not set)."""
        chosen: dict[str, Any] = dict(self.fixed)
        for key, dist in self.distributions.items():
            if (only is None or key in only) and self.applies(key, chosen):
                chosen[key] = suggest(trial, key, dist)
        return chosen


def suggest(trial: optuna.Trial, key: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def pruned(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))


def claim(trial: optuna.Trial) -> None:
    """Mark a trial as this sweeper's, so that a later sweep on the same host can tell that it
    was interrupted (the sweeper asked for it, then was killed before telling its result). A
    trial ClaimsTrials created is claimed already; a queued one is claimed here, one attribute
    per write, the pid last: until it is written, the trial's claimants decide (interrupted)."""
    if tracking.owner_tagged(trial.user_attrs):
        return
    tags = tracking.process_tags()
    pid = tracking.PROCESS_TAG_PREFIX + "pid"
    for key, value in sorted(tags.items(), key=lambda item: item[0] == pid):
        trial.set_user_attr(key, value)


def interrupted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials still RUNNING whose sweeper is proven gone (tracking.owner_gone), or, for a queued
    trial taken but not yet claimed, all of whose claimants are (ClaimsTrials). Trials of live
    sweepers, or of sweepers that cannot be proven gone (other hosts, other containers, older
    versions' trials), are left alone: they may be running right now."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if (tracking.owner_gone(t.user_attrs) if tracking.owner_tagged(t.user_attrs) else claimants_gone(t.user_attrs))
    ]


def claimants_gone(attrs: Mapping[str, Any]) -> bool:
    claimants = [v for k, v in attrs.items() if k.startswith(CLAIMANT_PREFIX) and isinstance(v, dict)]
    return bool(claimants) and all(processes.proven_gone(c) for c in claimants)


def own_running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials still RUNNING that this process claimed (`claim`): the trials in flight when it is
    interrupted. A queued trial taken but not yet claimed may be another server's, which won the
    race for it: it is left to its claimants (`interrupted`)."""
    mine = tracking.process_tags()
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if tracking.owner_tagged(t.user_attrs) and all(t.user_attrs.get(k) == v for k, v in mine.items())
    ]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a sweep as Ctrl-C does (runner.run does the same for one run), through the
    clean-up a KeyboardInterrupt gets; by default it would end the sweeper at once, leaving its
    joblib workers alive and its parent run RUNNING."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_interruption(err: BaseException) -> bool:
    """Ctrl-C or SIGTERM: a KeyboardInterrupt, or the one-line SystemExit that elm_audio's app
    makes of one when it stops a trial run in the sweeper's own process (the basic launcher)."""
    return isinstance(err, KeyboardInterrupt) or (isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt))


def stop_workers(launcher: Any) -> None:
    """Kill the joblib launcher's worker processes and wait until they are reaped (so that their
    trial runs' processes are proven gone). loky keeps its workers between batches for reuse, and
    one whose sweeper has ended lives on, blocked, its memory held. The multiprocessing backend's
    pool ends with each batch; joblib terminates it when a batch is interrupted."""
    try:
        from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    except ImportError:
        return
    if not isinstance(launcher, JoblibLauncher):
        return
    from joblib.externals.loky import get_reusable_executor

    # reuse=True: asked with other arguments than joblib's, loky would replace the executor, first
    # waiting for the trials in flight to finish
    get_reusable_executor(reuse=True, kill_workers=True).shutdown(wait=True, kill_workers=True)


class SweepRun:
    """The sweep's parent run: created before the first trial, summarized after the last."""

    def __init__(
        self, cfg, study: optuna.Study, storage_url: str | None, space: Mapping[str, str], pruner: Mapping[str, Any] | None = None
    ):
        self.uri = tracking.connect(cfg.tracking.uri)
        self.experiment = tracking.experiment_id(tracking.experiment_name(cfg.dataset.name), self.uri)
        self.client = MlflowClient(self.uri)
        self.study = study
        tags = {
            **tracking.config_tags(cfg),
            "elm_audio.role": "sweep",
            "sweep_id": study.study_name,
            "optuna.storage": storage_label(storage_url),
        }
        name = f"sweep-{cfg.frontend.name}-{cfg.feature_size.name}-{cfg.classifier.name}-seed{cfg.seed}"
        run = self.client.create_run(self.experiment, tags={**tags, **tracking.process_tags()}, run_name=name)
        self.run_id = run.info.run_id
        self.space = space
        self.pruner = pruner  # the hydra.sweeper.pruner node of a sweep that prunes; None: it does not

    def log_plan(self, n_trials: int) -> None:
        """The search space and how many trials this sweeper runs (known once interrupted
        trials are settled)."""
        # Hydra's +key / ++key / ~key say how to override; MLflow's param names cannot hold them
        params = {f"search_space.{k.lstrip('+~')}": redact_value(v) for k, v in self.space.items()}
        params.update(
            n_trials=n_trials,
            study_name=self.study.study_name,
            sampler=type(self.study.sampler).__name__,
            pruner=pruner_label(self.pruner) if self.pruner else NO_PRUNER,
        )
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def child_runs(self) -> list[mlflow.entities.Run]:
        return self.client.search_runs(
            [self.experiment], filter_string=f"tags.sweep_id = '{self.study.study_name}' and tags.`elm_audio.role` = 'trial'"
        )

    def end_gone_runs(self) -> list[str]:
        """After an interruption, end as KILLED the trial runs still RUNNING whose process is
        proven gone (a killed joblib worker's); trials running elsewhere (SLURM jobs) end their
        own runs. Returns the runs ended."""
        running = self.client.search_runs(
            [self.experiment],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}' and attributes.status = 'RUNNING'",
        )
        ended = [run.info.run_id for run in running if tracking.owner_gone(run.data.tags)]
        for run_id in ended:
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        return ended

    def end_lost_run(self, trial: int) -> list[str]:
        """A trial whose job died (a SLURM job cancelled or killed) may leave its MLflow run
        RUNNING: end it as KILLED. Returns the runs ended."""
        ended = []
        running = self.client.search_runs(
            [self.experiment],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}' and attributes.status = 'RUNNING'",
        )
        for run in running:
            if run.data.tags.get("trial") == str(trial) or run.info.run_name.endswith(f"-trial{trial}"):
                self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
                ended.append(run.info.run_id)
        return ended

    def settle_interrupted(self) -> list[str]:
        """An interrupted sweeper leaves its last trials RUNNING in Optuna for ever: settle them
        (`settle`). Returns what was done, a line per trial."""
        return self.settle(interrupted(self.study))

    def settle(self, lost: list[optuna.trial.FrozenTrial]) -> list[str]:
        """Trials that were interrupted: one whose MLflow run finished gets the value that run
        returned (the work is not redone); the others fail, and a grid point is queued again.
        Returns what was done, a line per trial."""
        if not lost:
            return []
        finished = {r.data.tags.get("trial"): r for r in self.child_runs() if r.info.status == "FINISHED"}
        lines = []
        for trial in lost:
            run = finished.get(str(trial.number))
            if run is not None and run.data.tags.get("pruned") == "true":
                self.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
                lines.append(f"trial {trial.number} was interrupted after its run {run.info.run_id} was pruned: marked pruned")
            elif run is not None and objective(run_kind(run)) in run.data.metrics:
                self.study.tell(trial.number, run.data.metrics[objective(run_kind(run))], skip_if_finished=True)
                lines.append(f"trial {trial.number} was interrupted after its run {run.info.run_id} finished: its result is kept")
            else:
                self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                lines.append(f"trial {trial.number} was interrupted before its run finished: marked failed")
                if "grid_keys" in trial.user_attrs:  # a grid point is run again, as the grid promises every point
                    self.study.enqueue_trial(trial.params, user_attrs={"grid_keys": trial.user_attrs["grid_keys"]})
        return lines

    def finish(self, status: str = "FINISHED") -> dict[str, Any]:
        """Record the best trial (of the whole study, all servers), its params and test
        accuracy, the nested test accuracy, and a figure of the objective across trials; end the
        run with ``status`` (FINISHED, FAILED or KILLED)."""
        summary: dict[str, Any] = {}
        try:
            trials = completed(self.study)
            n_pruned = len(pruned(self.study))
            if n_pruned:
                self.client.log_metric(self.run_id, "n_trials_pruned", n_pruned)
            if trials:
                best = self.study.best_trial
                # a pruned trial's folds are no result: the nested figure chooses among complete trials
                children = {r.data.tags.get("trial"): r for r in self.child_runs() if r.data.tags.get("pruned") != "true"}
                best_run = children.get(str(best.number))
                name = primary(next((run_kind(r) for r in children.values()), "multiclass"))
                summary = {"trial": best.number, "metric": name, f"val_{name}": best.value, "params": best.params}
                summary["counts"] = trial_counts(self.study)
                if self.pruner is not None:
                    summary["pruner"] = self.pruner
                self.client.log_metric(self.run_id, f"best_val_{name}", best.value)
                self.client.log_metric(self.run_id, "n_trials_complete", len(trials))
                self.client.log_batch(self.run_id, params=[Param(f"best.{k}", str(v)) for k, v in best.params.items()])
                self.client.set_tag(self.run_id, "best_trial", str(best.number))
                if best_run is not None:
                    summary["run_id"] = best_run.info.run_id
                    summary[f"test_{name}"] = best_run.data.metrics.get(f"test_{name}")
                    self.client.set_tag(self.run_id, "best_run_id", best_run.info.run_id)
                    for metric in (f"test_{name}", f"test_{name}_std"):
                        if metric in best_run.data.metrics:
                            self.client.log_metric(self.run_id, f"best_{metric}", best_run.data.metrics[metric])
                nested = nested_test_score([r.data.metrics for r in children.values()], name)
                if nested is not None:
                    summary[f"nested_test_{name}"] = nested
                    self.client.log_metric(self.run_id, f"nested_test_{name}", nested)
                self.client.log_figure(self.run_id, objective_figure(trials, name), "objective.png")
                description = summary_lines(summary, self.study.study_name, self)
                self.client.set_tag(self.run_id, "mlflow.note.content", "\n".join(description))
        finally:
            self.client.set_terminated(self.run_id, status)
        return summary


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """The study's finished trials by state (complete, pruned, failed), those it holds none of left out."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED), "failed": states.count(TrialState.FAIL)}
    return {k: n for k, n in counts.items() if n or k == "complete"}


def counts_line(counts: Mapping[str, int]) -> str:
    """``12 trials: 7 complete, 5 pruned``."""
    return f"{sum(counts.values())} trials: " + ", ".join(f"{n} {state}" for state, n in counts.items())


def summary_lines(summary: Mapping[str, Any], study_name: str, sweep_run: "SweepRun") -> list[str]:
    name = summary["metric"]
    lines = [f"best trial #{summary['trial']} of study {study_name}: val_{name} {summary[f'val_{name}']:.4f}"]
    lines.append(f"  {counts_line(summary['counts'])}" + (f"; pruner {pruner_label(summary['pruner'])}" if "pruner" in summary else ""))
    if summary.get(f"test_{name}") is not None:
        lines.append(f"  its test_{name} {summary[f'test_{name}']:.4f} (run {summary.get('run_id')})")
    if f"nested_test_{name}" in summary:
        spoken = "accuracy" if name == "accuracy" else name
        lines.append(f"  nested test {spoken} (each fold's best validation trial) {summary[f'nested_test_{name}']:.4f}")
    lines.append("  params " + ", ".join(f"{k}={v}" for k, v in summary["params"].items()))
    lines.append(f"  sweep run {sweep_run.run_id} in {redact(sweep_run.uri)}")
    return lines


def look_lines(sweep_run: "SweepRun", storage_url: str | None, study_name: str) -> list[str]:
    """How to look at a finished sweep: its experiment's runs table (trials ranked with the other
    runs) and its parent run in the MLflow UI; the study in Optuna's dashboard where it is stored."""
    lines = [
        f"  browse       {tracking.ui_link(sweep_run.uri, sweep_run.experiment)}",
        f"  parent run   {tracking.ui_url(sweep_run.uri, sweep_run.experiment, sweep_run.run_id)}",
    ]
    if storage_url:
        where = storage_url[len(JOURNAL_PREFIX) :] if storage_url.startswith(JOURNAL_PREFIX) else storage_label(storage_url)
        lines.append(f"  study        optuna-dashboard {where}   (pip install optuna-dashboard; study {study_name})")
    return lines


def nested_test_score(runs_metrics: list[Mapping[str, float]], name: str = "accuracy") -> float | None:
    """For each test fold k, the trial with the best validation score (metric ``name``) on k's
    validation fold, scored on fold k: a test figure no hyper-parameter choice has seen (honest
    folds only)."""
    val, test = f"_val_{name}", f"_test_{name}"
    folds = sorted({m[: -len(val)] for r in runs_metrics for m in r if re.fullmatch(rf"fold\d+{val}", m)})
    if not folds:
        return None
    scores = []
    for fold in folds:
        candidates = [r for r in runs_metrics if f"{fold}{val}" in r and f"{fold}{test}" in r]
        best = max(candidates, key=lambda r: r[f"{fold}{val}"])
        scores.append(best[f"{fold}{test}"])
    return float(np.mean(scores))


def dataset_kind(cfg: DictConfig) -> str:
    """The task kind of the sweep's dataset, for the classifier's ``kind_search_space``: the
    dataset's ``kind`` key where it has one (synth), else from its index (a HEAR task or a table
    says its kind in its files; reading them reads no audio)."""
    if cfg.dataset.get("kind"):
        return str(cfg.dataset.kind)
    if not any((cfg.classifier.get("kind_search_space") or {}).values()):
        return "multiclass"  # nothing depends on it
    from ..settings.components import build_dataset

    return build_dataset(cfg).index(str(cfg.protocol.mode)).kind


def kind_entries(cfg: DictConfig) -> dict[str, str]:
    """What the classifier's search adds for the dataset's kind (svm: epsilon for regression)."""
    extra = (cfg.classifier.get("kind_search_space") or {}).get(dataset_kind(cfg)) or {}
    return OmegaConf.to_container(extra, resolve=True) if extra else {}


def run_kind(run) -> str:
    """The task kind a trial's run was scored on (runs from before kinds: multiclass)."""
    return run.data.tags.get("kind", "multiclass")


def objective_figure(trials: list[optuna.trial.FrozenTrial], name: str = "accuracy") -> Figure:
    """val_<metric> per trial and the best so far; the legend above the axes, where it hides no
    trial, and whole trial numbers on the x axis."""
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    fig = Figure(figsize=(max(6.0, min(12.0, 3.0 + 0.08 * len(numbers))), 3.8), layout="constrained")
    ax = fig.subplots()
    ax.scatter(numbers, values, s=18, label="trial", zorder=3)
    ax.step(numbers, np.maximum.accumulate(values), where="post", color="C1", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (Optuna's number)")
    ax.set_ylabel(f"val_{name} (the objective)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=2, fontsize=8, frameon=False)
    return fig
