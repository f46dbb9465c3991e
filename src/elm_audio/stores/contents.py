"""What identifies a clip wherever its dataset is mounted: its path below the dataset's root,
its size and a SHA-256 of its bytes (feature cache keys and MLflow's dataset digest hold these,
so servers that mount one dataset at different paths share cache entries).

Reading every byte of a large dataset on every run would cost minutes, so each file's digest is
remembered in a small JSON file per dataset root under the cache folder, with the file's size,
mtime, ctime and inode: a file rewritten in place, even one whose size and mtime were restored
(``touch -r``), has a new ctime and is read again. Runs that find digests missing compute them
under a lock, so parallel jobs read the dataset once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from .cache import READ_ONLY, file_sha256
from .shared_files import file_mode, make_folder, read_regular, write_new


@dataclass(frozen=True)
class Content:
    path: str  # below the dataset's root, POSIX
    size: int  # -1 where the file cannot be read
    sha256: str  # "" where the file cannot be read
    stat: list[int] | None = field(default=None, compare=False)  # when the digest was taken: see changed_since


def changed_since(paths: list[str], contents: list[Content]) -> list[str]:
    """The files whose bytes may differ from those their digest was taken of (rewritten since,
    even in place with the same size and mtime: the ctime moves)."""
    return [p for p, c in zip(paths, contents) if c.stat is not None and _stat(p) != c.stat]


def clip_contents(root: Path, paths: list[str], store_dir: Path) -> list[Content]:
    """Each file's path below ``root``, size and digest, in the order of ``paths``; digests
    are taken from (and added to) the store under ``store_dir`` where it is writable."""
    store = DigestStore(store_dir, root)
    stats = {p: _stat(p) for p in paths}
    known = store.read()
    if any(s is not None and known.get(p, [None])[:-1] != s for p, s in stats.items()):
        known = store.update(stats)
    return [
        Content(_relative(p, root), -1, "") if stats[p] is None else Content(_relative(p, root), stats[p][0], known[p][-1], stats[p])
        for p in paths
    ]


def _stat(path: str) -> list[int] | None:
    """What changes when a file's bytes do (ctime even when mtime is restored); None: unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:  # a clip outside the root (not made by the datasets here)
        return Path(os.path.relpath(path, root)).as_posix()


class DigestStore:
    """``<store_dir>/<hash of the root>.json``: absolute path -> [size, mtime_ns, ctime_ns, inode, sha256]."""

    def __init__(self, store_dir: Path, root: Path):
        self.file = store_dir / f"{hashlib.sha256(str(root).encode()).hexdigest()[:16]}.json"

    def read(self) -> dict[str, list]:
        try:
            return json.loads(read_regular(self.file)).get("files", {})
        except (OSError, ValueError, AttributeError):
            return {}  # none yet, or damaged: digests are computed again

    def update(self, stats: dict[str, list[int] | None]) -> dict[str, list]:
        """Digest the files whose stat the store does not hold, and store them (where the cache
        is writable; a read-only cache gets them computed for this run only)."""
        try:
            make_folder(self.file.parent, writable_by_group=True)
            lock = FileLock(str(self.file) + ".lock", mode=file_mode(writable_by_group=True))
            lock.acquire()
        except OSError as err:
            if err.errno not in READ_ONLY:
                raise
            return self._digest(self.read(), stats)
        try:
            known = self._digest(self.read(), stats)  # another job may have stored them meanwhile
            write_new(self.file, json.dumps({"files": known}).encode())
            return known
        finally:
            lock.release()

    @staticmethod
    def _digest(known: dict[str, list], stats: dict[str, list[int] | None]) -> dict[str, list]:
        for path, stat in stats.items():
            if stat is not None and known.get(path, [None])[:-1] != stat:
                try:
                    digest = file_sha256(Path(path))
                except OSError:  # unreadable: the data check names it
                    digest = ""
                after = _stat(path)  # rewritten while being read: its digest is not to be kept
                known[path] = [*stat, digest] if after == stat else [*stat, ""]
        return known
