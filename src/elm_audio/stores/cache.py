"""Feature cache: one entry per key that hashes everything that determines the features.

An entry is a folder ``<root>/<key>/`` holding ``features.npy`` (rows in clip order) and
``meta.json`` (clip ids, labels, the clips left out and why, the matrix's shape, dtype and
SHA-256). It is written under a temporary name and renamed into place only once complete, so
an interrupted extraction never leaves an entry that reads as complete; its rows are computed
beforehand in chunks that survive a kill and that every process needing the key shares
(chunks.py), and a file lock per key makes one of them assemble the entry. Every load verifies
the entry: a damaged one is named, moved aside and recomputed. Entries are readable by the
group (a shared cache), and a read-only cache serves the entries it holds without a lock.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from .processes import identity, proven_gone
from .shared_files import (
    TMP_PREFIX,
    NotARegularFile,
    file_mode,
    folder_mode,
    is_real_folder,
    make_folder,
    open_regular,
    read_regular,
    share,
    write_new,
)

# Bump when a change to the feature code changes the numbers it produces.
FEATURE_CODE_VERSION = 1
KEY = re.compile(r"[0-9a-f]{20}")  # what cache_key makes: the only names an entry may have
DAMAGED_PREFIX = ".damaged-"
OWNER = "owner.json"  # in a temporary folder: the identity of the process writing it
READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)  # a cache one may read but not write


def cache_key(spec: dict[str, Any]) -> str:
    payload = json.dumps({"feature_code_version": FEATURE_CODE_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class CacheError(RuntimeError):
    """A cache that cannot serve or store an entry; the message says which folder and what to do."""


@dataclass
class Features:
    """A feature matrix with the clips its rows belong to."""

    key: str
    matrix: np.ndarray  # (n_clips, feature_dim), float32
    clip_ids: list[str]
    labels: list[str]
    bad_clips: dict[str, str] = field(default_factory=dict)  # clip id -> why it was left out
    extract_seconds: float = 0.0
    path: Path | None = None
    silent_clips: list[str] = field(default_factory=list)

    def usable(self) -> np.ndarray:
        """Boolean mask of the rows whose clips decoded."""
        return np.array([cid not in self.bad_clips for cid in self.clip_ids], dtype=bool)


def npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of the .npy file open at its start; after it, its data."""
    version = np.lib.format.read_magic(fh)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f".npy format {version[0]}.{version[1]}, not one this cache writes")
    return read(fh)


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def allocate(path: Path) -> None:
    """Reserve a (sparse) file's blocks now: rows written through a memory map onto a full disk
    kill the process with SIGBUS; here a full disk is an OSError (ENOSPC) before any work."""
    with path.open("r+b") as fh:
        os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)


class FeatureCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        self.damaged: list[str] = []  # what load() found wrong and moved aside, to tell the user

    def entry(self, key: str) -> Path:
        if not KEY.fullmatch(key):  # a key read from elsewhere (a run's tag) never names another folder
            raise ValueError(f"{key!r} is not a features key (20 hexadecimal digits)")
        return self.root / key

    @contextmanager
    def lock(self, key: str) -> Iterator[bool]:
        """Hold the key's lock (runs that need the same features wait for the one assembling
        them, having computed their chunks together); yields False, holding nothing, where the
        cache is read-only."""
        try:
            make_folder(self.root, writable_by_group=True)
            self.entry(key.rsplit("-", 1)[-1])  # a key, or what it keys ("training-<key>"): never a path
            lock = FileLock(str(self.root / f"{key}.lock"), mode=file_mode(writable_by_group=True))
            lock.acquire()
        except OSError as err:
            if err.errno not in READ_ONLY:
                raise CacheError(f"cache.dir={self.root}: cannot lock {key}: {err.strerror or err}; check the disk") from err
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def read_only_error(self) -> CacheError:
        return CacheError(
            f"cache.dir={self.root}: cannot write there and it does not hold these features; "
            "choose a writable cache.dir"
        )

    def load(self, key: str, clips: tuple[list[str], list[str]] | None = None) -> Features | None:
        """The entry, verified; None when there is none, or it was damaged or is not of these
        ``clips`` (ids, labels), as the dataset lists them: then it is moved aside, and ``damaged``
        says why. An entry this user may not read is no sign of damage: a CacheError says so."""
        entry = self.entry(key)
        if not os.path.lexists(entry):
            return None
        try:
            if not is_real_folder(entry):
                raise NotARegularFile(f"{entry.name} is not a folder of its own (a link, or a file)")
            return self._verified(key, entry, clips)
        except PermissionError as err:
            raise CacheError(
                f"cache.dir={self.root}: cannot read the entry {entry.name} ({err.strerror}: {Path(err.filename).name}); "
                f"ask its owner to make it readable by the group (chmod -R g+rX {entry}), or choose another cache.dir"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            self._set_aside(entry, str(err))
            return None

    def _verified(self, key: str, entry: Path, clips: tuple[list[str], list[str]] | None) -> Features:
        """Every part a regular file inside the entry (no links, no FIFOs), the matrix's bytes
        those its metadata records, its clips and labels the dataset's."""
        meta = json.loads(read_regular(entry / "meta.json"))
        if clips is not None and (meta["clip_ids"], meta["labels"]) != (list(clips[0]), list(clips[1])):
            raise ValueError("its clip ids or labels are not the dataset's (changed by hand, or another entry's)")
        with open_regular(entry / "features.npy") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() != meta["sha256"]:
                raise ValueError("features.npy does not match its checksum (changed or damaged on disk)")
            fh.seek(0)
            shape, fortran, dtype = npy_header(fh)
            if list(shape) != meta["shape"] or str(dtype) != meta["dtype"] or fortran:
                raise ValueError(f"features.npy is {dtype} {list(shape)}, meta.json says {meta['dtype']} {meta['shape']}")
            matrix = np.memmap(fh, dtype=dtype, mode="r", shape=shape, offset=fh.tell()) if np.prod(shape) else np.zeros(shape, dtype)
        return Features(
            key,
            np.asarray(matrix),
            meta["clip_ids"],
            meta["labels"],
            meta.get("bad_clips", {}),
            meta.get("extract_seconds", 0.0),
            entry,
            meta.get("silent_clips", []),
        )

    def _set_aside(self, entry: Path, why: str) -> None:
        target = self.root / f"{DAMAGED_PREFIX}{entry.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        try:
            os.replace(entry, target)
            where = f"moved to {target}"
        except OSError as err:
            where = f"could not be moved aside ({err.strerror}); remove it"
        self.damaged.append(f"cache entry {entry} is damaged ({why}); {where}; computing the features again")

    def clean_stale(self) -> None:
        """Remove temporary folders left by extractions whose process is proven gone (killed):
        each holds its owner's identity (``owner.json``, see processes.proven_gone); a folder
        whose owner may be alive (another container sharing the cache) or cannot be read is
        left alone."""
        for tmp in self.root.glob(f"{TMP_PREFIX}*"):
            try:
                owner = json.loads(read_regular(tmp / OWNER))
            except (OSError, ValueError):
                continue
            if isinstance(owner, dict) and proven_gone(owner):
                shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def writing(self, n_bytes: int) -> Iterator[None]:
        """Turn a full disk while ``n_bytes`` of features are written into a CacheError naming the folder."""
        try:
            yield
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise CacheError(
                f"cache.dir={self.root}: the disk is full ({n_bytes / 1e6:.1f} MB of features to write "
                "there); free space, or choose a cache.dir on a disk with room"
            ) from None

    def store(self, key: str, n_rows: int, dim: int, fill: Callable[[np.ndarray], dict[str, Any]]) -> Features:
        """Create an entry: ``fill`` writes the rows into a (n_rows, dim) float32 memory map
        and returns the metadata. Nothing is left behind if ``fill`` raises; a full disk is a
        CacheError naming the folder."""
        with self.writing(n_rows * dim * 4):
            return self._store(key, n_rows, dim, fill)

    def _store(self, key: str, n_rows: int, dim: int, fill: Callable[[np.ndarray], dict[str, Any]]) -> Features:
        make_folder(self.root, writable_by_group=True)
        self.clean_stale()
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-{os.getpid()}-", dir=self.root))
        try:
            tmp.chmod(folder_mode(self.root))  # the group may read whose it is (clean_stale), never write into it
            (tmp / OWNER).write_text(json.dumps(identity()))
            rows = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float32, shape=(n_rows, dim))
            allocate(tmp / "features.npy")
            meta = fill(rows)
            rows.flush()
            del rows
            meta.update(shape=[n_rows, dim], dtype="float32", sha256=file_sha256(tmp / "features.npy"))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            (tmp / OWNER).unlink()  # an entry is the matrix and its metadata alone
            share(tmp)
            try:
                os.replace(tmp, self.entry(key))
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                shutil.rmtree(self.entry(key))  # a damaged entry left in place
                os.replace(tmp, self.entry(key))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        loaded = self.load(key)
        if loaded is None:
            raise CacheError(f"cache.dir={self.root}: the entry just written does not read back: " + "; ".join(self.damaged))
        return loaded


def write_checked(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with its SHA-256 beside it (``<name>.sha256``, in sha256sum's
    format), each through a fresh temporary file renamed into place (never through a link
    planted under either name): read it back with read_checked. Ctrl-C or SIGTERM waits for
    both: between the two renames it would leave a file that no longer matches its checksum
    (an interrupted training's last checkpoint, set aside as damaged by the resume)."""
    with interrupts_held():
        write_new(path, data)
        write_new(checksum_of(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n".encode())


@contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT and SIGTERM arriving inside are delivered when it ends (in the main thread, where
    Python runs signal handlers; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # None: a handler installed outside Python, left alone
            previous[signum] = signal.signal(signum, lambda received, frame: held.append(received))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in held:
            signal.raise_signal(signum)


def read_checked(path: Path) -> bytes:
    """The bytes of a file written by write_checked; ValueError where either is not a regular
    file of its own, or its checksum is missing or does not match them (changed or damaged on disk)."""
    data = read_regular(path)
    try:
        recorded = read_regular(checksum_of(path)).decode().split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        raise ValueError(f"it has no checksum ({checksum_of(path).name})") from None
    if hashlib.sha256(data).hexdigest() != recorded:
        raise ValueError(f"it does not match its checksum ({checksum_of(path).name}): changed or damaged on disk")
    return data


def checksum_of(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def set_aside(path: Path, why: str) -> str:
    """Move a file that failed its checks (and its checksum) aside as ``.damaged-<name>-...``
    beside it; the line that says so."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        os.replace(path, path.with_name(f"{DAMAGED_PREFIX}{path.name}-{stamp}"))
        checksum = checksum_of(path)
        if checksum.exists():
            os.replace(checksum, checksum.with_name(f"{DAMAGED_PREFIX}{checksum.name}-{stamp}"))
        where = f"moved to {path.with_name(f'{DAMAGED_PREFIX}{path.name}-{stamp}')}"
    except OSError as err:
        where = f"could not be moved aside ({err.strerror}); remove it"
    return f"{path} is damaged ({why}); {where}"
