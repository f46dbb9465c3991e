"""Where a sweep's study lives: Optuna storages (in memory; an RDB URL, SQLite or PostgreSQL;
``journal:<path>``, a journal file on a disk every server sees), opened, repaired where a kill
cut a record, and named without their passwords; the study opened on one, once per sweep.

A stored trial names the sweeper that owns it from its first write (`trials.ClaimsTrials`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
from optuna.pruners import BasePruner
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._file import get_lock_file
from sqlalchemy.exc import SQLAlchemyError

from ..config import ConfigError
from ..stores.redaction import redact, redact_value
from ..stores.tracking import RunNames
from .trials import ClaimsTrials

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


class ClaimingJournalStorage(ClaimsTrials, JournalStorage):
    pass


class ClaimingRDBStorage(ClaimsTrials, RDBStorage):
    pass


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


def default_study_name(names: RunNames, stored: bool = True) -> str:
    """A stored study is named after what it runs, so the same command finds it again; an
    in-memory one also after when it started, so two sweeps' trials never share a sweep_id."""
    name = (
        f"elm_audio-{names.dataset}-{names.frontend}-{names.feature_size}-"
        f"{names.classifier}-seed{names.seed}-{names.mode}"
    )
    return name if stored else f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"


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


def process_seed(seed: int | None) -> int | None:
    """Servers sharing a study must not draw the same trials: mix the host and process into the
    sampler's seed (a shared sweep cannot be replayed exactly anyway)."""
    if seed is None:
        return None
    return (int(seed) * 1_000_003 + hash((socket.gethostname(), os.getpid()))) % (2**31 - 1)
