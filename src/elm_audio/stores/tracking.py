"""MLflow: where runs go, one experiment per dataset, and the flattened config as params.

Default store: SQLite at ``mlruns/mlflow.db`` under the working directory, artifacts under
``mlruns/``. ``MLFLOW_TRACKING_URI`` wins over ``tracking.uri`` where set.
"""

from __future__ import annotations

import errno
import http.client
import json
import logging
import os
import re
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import mlflow
from filelock import FileLock
from mlflow.entities import Param, Run
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from ..config import ConfigError
from . import processes
from .redaction import CREDENTIALS, redact, redact_value

DEFAULT_DIR = "mlruns"
EXPERIMENT_PREFIX = "elm_audio/"
DEFAULT_EXPERIMENT = "default"  # the experiment tag of runs made without a preset
# what writing to a store raises: MLflow's errors, its database's, the file system's
STORE_ERRORS = (MlflowException, SQLAlchemyError, OSError)


# MLflow logs every database error with its traceback before raising it again as an
# MlflowException, which the run turns into one line (a full disk, a damaged store): not twice.
logging.getLogger("mlflow.store.db.utils").addFilter(lambda record: record.levelno < logging.ERROR)

# URIs this process gave mlflow.set_tracking_uri, which copies them into MLFLOW_TRACKING_URI:
# that variable wins only where the user set it.
_SET_HERE: set[str] = set()


def use(uri: str) -> None:
    """mlflow.set_tracking_uri, remembering that the variable it sets is not the user's."""
    _SET_HERE.add(uri)
    mlflow.set_tracking_uri(uri)


def resolve_uri(configured: str | None) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env not in _SET_HERE:
        return env
    if configured:
        return str(configured)
    return f"sqlite:///{(Path.cwd() / DEFAULT_DIR / 'mlflow.db').as_posix()}"


def experiment_name(dataset: str) -> str:
    """One MLflow experiment per dataset."""
    return EXPERIMENT_PREFIX + dataset


def dataset_of(experiment: str) -> str | None:
    """The dataset an elm_audio experiment name is for; None for other experiments."""
    return experiment[len(EXPERIMENT_PREFIX) :] if experiment.startswith(EXPERIMENT_PREFIX) else None


def local_sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


# How long a tracking server may take to answer the first request before the run gives up.
PROBE_SECONDS = 5.0


def credentials_to_environment(uri: str) -> str:
    """An http(s) URI's user:password moved into MLflow's own MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD (where those are not set already); the URI without them.

    The password runs to the last '@' before the host, as redaction reads it: a raw '/' in it
    (``http://user:pa/ss@host``) does not end the authority there, as urllib would read it
    (taking ``pa`` for a port and printing it in its error)."""
    found = CREDENTIALS.match(uri)
    if found is None or urlsplit(uri).scheme not in ("http", "https"):
        return uri
    scheme, user = found["head"].split("://", 1)
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(user))
    os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(found["secret"]))
    return f"{scheme}://{uri[found.end():]}"


def probe(uri: str, shown: str) -> None:
    """A ConfigError within seconds when no MLflow server answers at an http(s) URI (MLflow's
    own client retries for minutes); ``shown`` is the URI as the message names it."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_SECONDS):
            pass
    except urllib.error.HTTPError:
        pass  # a server answered (some proxies guard /health): MLflow's own calls say the rest
    except (OSError, ValueError, http.client.HTTPException) as err:  # HTTPException: a malformed URL, or no HTTP there
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"tracking.uri={shown}: no MLflow server answers there ({redact(reason)}); "
            "start it (mlflow server ...), or fix tracking.uri / MLFLOW_TRACKING_URI"
        ) from None


def connect(configured: str | None) -> str:
    """Point MLflow at the store and check that it answers (see ``open_store``). Returns the URI
    in use (credentials of an http(s) URI moved to MLflow's environment variables)."""
    given = resolve_uri(configured)
    shown = redact_value(given)
    uri = credentials_to_environment(given)
    if uri.startswith(("http://", "https://")):
        probe(uri, shown)
    use(uri)
    open_store(uri, shown)
    return uri


def disk_full(err: BaseException) -> bool:
    """A write refused for want of space (or quota), as the OS or SQLite says it."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(words in str(err) for words in ("database or disk is full", "No space left on device", "Disk quota exceeded"))


def full_disk_error(err: BaseException, uri: str) -> ConfigError:
    """One line for a write the disk refused: the file or the store it was for, and what to do."""
    db = local_sqlite_path(uri)
    if isinstance(err, OSError) and err.filename:
        where = f"{err.filename}: the disk is full"
    elif db is not None:
        where = f"tracking.uri={redact_value(uri)}: the disk holding {db.parent} is full"
    else:
        where = f"the disk is full ({redact(err)})"
    return ConfigError(f"{where}; free space there, or point cache.dir / tracking.uri to a disk with room")


def open_store(uri: str, shown: str | None = None) -> None:
    """A ConfigError naming the store and what to do unless MLflow can use it. A local SQLite
    store is created once even when several processes start at the same moment (MLflow's schema
    migration is not safe to race), and checked for damage (a truncated or overwritten file)."""
    shown = shown or redact_value(uri)
    db = local_sqlite_path(uri)
    try:
        if db is None:
            MlflowClient(uri).search_experiments(max_results=1)
            return
        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(db) + ".lock"):
            if not db.exists() or db.stat().st_size == 0:
                _create_sqlite_store(db)
            damage = sqlite_damage(db)
            if damage is None:
                MlflowClient(uri).search_experiments(max_results=1)
    except (MlflowException, SQLAlchemyError, sqlite3.Error, OSError, ValueError) as err:
        if disk_full(err):
            where = db.parent if db is not None else shown
            raise ConfigError(f"tracking.uri={shown}: the disk holding {where} is full; free space there or choose another tracking.uri") from None
        damage = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        if db is None or not any(words in damage for words in HALF_BUILT):
            raise ConfigError(f"tracking.uri={shown}: the MLflow store cannot be used ({redact(err)})") from None
    if damage is not None:
        raise ConfigError(
            f"tracking.uri={shown}: the MLflow store is damaged ({damage}); move {db} aside (sqlite3's .recover "
            "may rescue its runs) and run again to start a new store, or restore it from a copy"
        )


# What MLflow meets in a store whose creation was cut short by an older elm_audio (which built it
# in place) or whose file was overwritten.
HALF_BUILT = ("duplicate column", "already exists", "no such table", "no such column", "malformed", "not a database")


def sqlite_damage(db: Path) -> str | None:
    """What SQLite finds wrong with a database file (PRAGMA quick_check), or None."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            found = [row[0] for row in con.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError:  # not the file's fault (locked, unreadable): MLflow's error says
        return None
    except sqlite3.DatabaseError as err:
        return str(err)
    return None if found == ["ok"] else found[0].strip().splitlines()[-1]


# What a store is built under until its tables are complete (see _create_sqlite_store).
CREATING = ".creating-"


def _create_sqlite_store(db: Path) -> None:
    """MLflow builds a SQLite store by dozens of schema migrations, not in one transaction: a
    kill in the middle left a half-built store that failed for ever. The store is built under a
    temporary name and renamed into place once complete. Callers hold the store's lock, so a
    temporary file found here was left by a killed process."""
    for stale in db.parent.glob(f"{db.name}{CREATING}*"):
        stale.unlink(missing_ok=True)
    building = db.with_name(f"{db.name}{CREATING}{os.getpid()}")
    uri = f"sqlite:///{building.as_posix()}"
    MlflowClient(uri).search_experiments(max_results=1)
    engine = getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)  # MLflow keeps an engine per URI: close it
    if engine is not None:
        engine.dispose()
    os.replace(building, db)


# MLflow 3 opens experiments in its GenAI view unless told otherwise: the tag records what the
# experiment is, the link parameter opens the runs table (the browser's setting wins over the tag).
KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def column(kind: str, key: str) -> str:
    """A column of MLflow's runs table as its UI names it (makeCanonicalSortKey)."""
    return f"{kind}.`{key}`"


# MLflow's runs table opens with names, dates, Source, Models and Dataset: no score. Its UI reads a
# "shared view" (columns, their order, sort) from the experiment tag mlflow.sharedViewState.<key>
# when the page's address carries viewStateShareKey=<key> (and none of the search parameters, which
# win over it): the printed links open this one, the scores first, best test accuracy on top.
VIEW_KEY = "elm_audio"
VIEW_TAG = "mlflow.sharedViewState." + VIEW_KEY


def runs_view(name: str = "accuracy") -> str:
    """The runs table's view for an experiment scored on metric ``name`` (its task kind's
    primary metric): its test and validation scores first, best test score on top."""
    columns = [
        column("metrics", f"test_{name}"),
        column("metrics", f"val_{name}"),
        *(column("tags", tag) for tag in ("frontend", "feature_size", "classifier")),
        column("attributes", "Dataset"),  # wide: last, where it hides no score
    ]
    view = {"orderByKey": columns[0], "orderByAsc": False, "selectedColumns": columns, "columnOrder": columns}
    return json.dumps(view, separators=(",", ":"))


def this_versions_view(view: str | None) -> bool:
    """Whether ``view`` is a runs view this version writes (for any metric)."""
    try:
        order = json.loads(view or "").get("orderByKey", "")
    except (ValueError, AttributeError):
        return False
    metric = re.fullmatch(r"metrics\.`test_(\w+)`", order)
    return metric is not None and view == runs_view(metric.group(1))


def experiment_id(name: str, uri: str, metric: str | None = None) -> str:
    """Get or create the experiment, tolerating another process creating it meanwhile, tagged as
    a model-training experiment (unless it says otherwise) with this version's runs view."""
    client = MlflowClient(uri)
    for attempt in range(5):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            # a race sets the same values twice, which is harmless
            if exp.tags.get(KIND_TAG) is None:
                client.set_experiment_tag(exp.experiment_id, KIND_TAG, MODEL_TRAINING)
            current = exp.tags.get(VIEW_TAG)  # without a metric (a sweep's parent), any view of this version stays
            wanted = runs_view(metric) if metric else (current if this_versions_view(current) else runs_view())
            if current != wanted:
                client.set_experiment_tag(exp.experiment_id, VIEW_TAG, wanted)
            return exp.experiment_id
        db = local_sqlite_path(uri)
        location = (db.parent / "artifacts").as_uri() if db is not None else None
        try:
            return client.create_experiment(name, artifact_location=location, tags={KIND_TAG: MODEL_TRAINING, VIEW_TAG: runs_view(metric or "accuracy")})
        except MlflowException as err:
            if disk_full(err):  # no race: another try cannot help
                raise
            time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"could not get or create the MLflow experiment {name} at {redact(uri)}")


TRAINED_SCORER = "trained"  # the classifier tag of weights=trained runs
PROCESS_TAG_PREFIX = "elm_audio."  # elm_audio.host, elm_audio.pid, elm_audio.boot_id, ...


def process_tags() -> dict[str, str]:
    """Which process runs a run (processes.identity), so a later run can tell a run killed by
    SIGKILL from one still running, here or in another container."""
    return {PROCESS_TAG_PREFIX + k: v for k, v in processes.identity().items()}


def owner_tagged(tags: Mapping[str, Any]) -> bool:
    """Whether a run or trial names its process at all (sweeps.trials.claim writes the pid last)."""
    return bool(tags.get(PROCESS_TAG_PREFIX + "pid"))


def owner_gone(tags: dict[str, str]) -> bool:
    """Whether the process named by a run's tags (or a trial's user attributes) is proven gone."""
    return processes.proven_gone({k: tags.get(PROCESS_TAG_PREFIX + k) for k in processes.FIELDS})


def end_orphaned_runs(uri: str, experiment: str) -> list[str]:
    """Runs still RUNNING whose process is proven gone (killed with SIGKILL, or the machine lost
    power) are ended as KILLED; returns their ids. Runs whose process cannot be proven gone
    (another container's, another machine's, or tagged by an older version) are left alone."""
    client = MlflowClient(uri)
    ended = []
    for run in client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if owner_gone(run.data.tags):
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    return ended


@dataclass(frozen=True)
class RunNames:
    """What a run compares, as its tags and its name say it (settings.load fills it)."""

    dataset: str
    frontend: str
    feature_size: str
    classifier: str  # the classifier group's choice
    weights: str  # random | trained
    mode: str  # protocol.mode
    experiment: str | None = None  # experiment_name: a preset's
    seed: int = 0

    @property
    def scorer(self) -> str:
        """What scores a run's front-end: the configured classifier, or, for weights=trained, the
        front-end's own trained softmax layer ("trained")."""
        return TRAINED_SCORER if self.weights == "trained" else self.classifier


def run_tags(names: RunNames) -> dict[str, str]:
    """Tags that say what a run or sweep compared: front-end, dataset, size, classifier,
    protocol, and the code's commit where known."""
    tags = {
        "frontend": names.frontend,
        "dataset": names.dataset,
        "feature_size": names.feature_size,
        "classifier": names.scorer,
        "weights": names.weights,
        "protocol.mode": names.mode,
        # a preset's runs (experiment=paper: reproductions) are never mixed with the method's
        "experiment": names.experiment or DEFAULT_EXPERIMENT,
    }
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


def git_commit() -> str | None:
    """The commit of the elm_audio checkout being run, where it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_name(names: RunNames, trial: int | None = None) -> str:
    """What a run is, readable in a table of fifty: front-end, size, classifier, seed, and the
    preset and trial where there is one."""
    parts = [names.frontend, names.feature_size, names.scorer, f"seed{names.seed}"]
    if names.experiment:
        parts.append(str(names.experiment))
    if trial is not None:
        parts.append(f"trial{trial}")
    return "-".join(parts)


def unique_run_name(uri: str, experiment: str, name: str) -> str:
    """``name``, or ``name-2``, ``name-3`` ... where the experiment already holds a run so named,
    so that identical reruns stay apart in the runs table (two processes starting at the same
    moment may still pick one name)."""
    # LIKE's "_" matches any character: a wider net, narrowed to exact names below
    runs = MlflowClient(uri).search_runs([experiment], filter_string=f"attributes.run_name LIKE '{name}%'", max_results=50_000)
    taken = {r.info.run_name for r in runs}
    if name not in taken:
        return name
    return next(f"{name}-{k}" for k in range(2, len(taken) + 3) if f"{name}-{k}" not in taken)


# Where `mlflow ui` serves a store that is no server.
LOCAL_UI = "http://127.0.0.1:5000"


def ui_url(uri: str, experiment: str, run_id: str | None = None) -> str:
    """The address of an experiment's runs table, opened on runs_view (scores as columns, best
    first), or of one of its runs' page; in MLflow's model-training view. The table's route is
    given in full: MLflow's redirect from the bare experiment page drops viewStateShareKey."""
    if run_id:
        page = f"#/experiments/{experiment}/runs/{run_id}?{MODEL_TRAINING_VIEW}"
    else:
        page = f"#/experiments/{experiment}/runs?viewStateShareKey={VIEW_KEY}&{MODEL_TRAINING_VIEW}"
    uri = redact(uri)
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/{page}"


def ui_link(uri: str, experiment: str, run_id: str | None = None) -> str:
    """ui_url, after the command that serves the store where it is no server."""
    url = ui_url(uri, experiment, run_id)
    if uri.startswith(("http://", "https://")):
        return url
    return f"mlflow ui --backend-store-uri {redact(uri)}   then {url}"


def last_run_metrics() -> dict[str, float]:
    """The metrics of the run this process ended last (none: {})."""
    run = mlflow.last_active_run()
    return dict(run.data.metrics) if run is not None else {}


# --- Runs read and written by id, for code that makes no active run of its own: the sweep's
# parent run (sweeps/parent.py) and the report (report/), which reach MLflow only through these.

def create_run(uri: str, experiment: str, tags: Mapping[str, str], run_name: str) -> str:
    """A new run, RUNNING, in ``experiment`` (its id), not made this process's active run; its id."""
    return MlflowClient(uri).create_run(experiment, tags=dict(tags), run_name=run_name).info.run_id


def log_params(uri: str, run_id: str, params: Mapping[str, Any]) -> None:
    """Params of a run, each value as its text, in one write."""
    MlflowClient(uri).log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


def log_metric(uri: str, run_id: str, key: str, value: float) -> None:
    MlflowClient(uri).log_metric(run_id, key, value)


def set_tag(uri: str, run_id: str, key: str, value: str) -> None:
    MlflowClient(uri).set_tag(run_id, key, value)


def log_figure(uri: str, run_id: str, figure: Any, name: str) -> None:
    """A matplotlib figure as the run's artifact ``name`` (objective.png)."""
    MlflowClient(uri).log_figure(run_id, figure, name)


def log_file(uri: str, run_id: str, path: str | Path) -> None:
    """A file as an artifact at the top of the run's artifacts, under its own name."""
    MlflowClient(uri).log_artifact(run_id, str(path))


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """End a run as ``status``: FINISHED, FAILED or KILLED."""
    MlflowClient(uri).set_terminated(run_id, status)


def search_runs(uri: str, experiment: str, filter_string: str) -> list[Run]:
    """An experiment's runs that ``filter_string`` (MLflow's search syntax) selects, as MLflow
    gives them (``Run``: run.info with run_id, run_name, status; run.data with tags, metrics,
    params), up to its default of 1,000."""
    return MlflowClient(uri).search_runs([experiment], filter_string=filter_string)


def runs_table(uri: str, experiment: str, max_results: int = 100_000):
    """An experiment's runs as a pandas DataFrame, a row each: ``run_id``, ``status``,
    ``start_time`` and a column per ``tags.<key>``, ``params.<key>`` and ``metrics.<key>``
    (mlflow.search_runs); MLflow is pointed at ``uri`` (see ``use``)."""
    use(uri)
    return mlflow.search_runs([experiment], max_results=max_results, output_format="pandas")


def experiment_ids(uri: str) -> dict[str, str]:
    """Every experiment of the store (up to 1,000): name -> id."""
    return {e.name: e.experiment_id for e in MlflowClient(uri).search_experiments(max_results=1000)}


def download_artifact(uri: str, run_id: str, path: str, folder: str | Path) -> str:
    """A run's artifact ``path`` copied into ``folder``; the local path of the copy. Raises (as
    MLflow does, in its own kinds of error) where the run has no such artifact."""
    return MlflowClient(uri).download_artifacts(run_id, path, str(folder))
