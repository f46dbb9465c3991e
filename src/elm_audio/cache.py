"""Feature cache: one entry per key that hashes everything that determines the features.

An entry is a folder ``<root>/<key>/`` holding ``features.npy`` (rows in clip order) and
``meta.json``. It is written under a temporary name and renamed into place only once complete,
so an interrupted extraction never leaves an entry that reads as complete; a file lock per key
makes concurrent runs that need the same features compute them once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

# Bump when a change to the feature code changes the numbers it produces.
FEATURE_CODE_VERSION = 1


def cache_key(spec: dict[str, Any]) -> str:
    payload = json.dumps({"feature_code_version": FEATURE_CODE_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


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

    def usable(self) -> np.ndarray:
        """Boolean mask of the rows whose clips decoded."""
        return np.array([cid not in self.bad_clips for cid in self.clip_ids], dtype=bool)


class FeatureCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def entry(self, key: str) -> Path:
        return self.root / key

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock")):
            yield

    def load(self, key: str) -> Features | None:
        entry = self.entry(key)
        meta_path = entry / "meta.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        matrix = np.load(entry / "features.npy", mmap_mode="r")
        return Features(
            key,
            np.asarray(matrix),
            meta["clip_ids"],
            meta["labels"],
            meta.get("bad_clips", {}),
            meta.get("extract_seconds", 0.0),
            entry,
        )

    def store(self, key: str, n_rows: int, dim: int, fill: Callable[[np.ndarray], dict[str, Any]]) -> Features:
        """Create an entry: ``fill`` writes the rows into a (n_rows, dim) float32 memory map
        and returns the metadata. Nothing is left behind if ``fill`` raises."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.root))
        try:
            rows = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float32, shape=(n_rows, dim))
            meta = fill(rows)
            rows.flush()
            del rows
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            os.replace(tmp, self.entry(key))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        loaded = self.load(key)
        assert loaded is not None
        return loaded
