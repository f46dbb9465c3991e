"""Any collection laid out as one sub-folder of audio files per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from .base import PARTITIONS, Clip, ClipIndex, Dataset, DatasetError, audio_files, require_root


def stratified_folds(labels: list[str], n_folds: int, seed: int | None) -> list[int]:
    """A 1-based fold per item; ``seed=None`` keeps the order (no shuffling)."""
    counts = {label: labels.count(label) for label in set(labels)}
    smallest = min(counts, key=counts.get)
    if counts[smallest] < n_folds:
        raise DatasetError(
            f"class {smallest!r} has {counts[smallest]} clip(s), fewer than dataset.n_folds={n_folds}; "
            "add clips or lower dataset.n_folds"
        )
    splitter = StratifiedKFold(n_folds, shuffle=seed is not None, random_state=seed)
    folds = np.zeros(len(labels), dtype=int)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels), start=1):
        folds[test] = k
    return folds.tolist()


def read_list(path: Path, key: str) -> list[str]:
    """Relative clip paths, one a line, as in the GTZAN split lists."""
    if not path.is_file():
        raise DatasetError(f"{key}={path}: no such list file")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class Folder(Dataset):
    """``root/<class>/<clip>.<ext>``. Split by stratified k-fold (shuffled with ``fold_seed``),
    or by ``split_lists`` (train / validation / test files naming clips relative to the root)."""

    def __init__(
        self,
        root: str | None,
        name: str = "folder",
        n_folds: int = 10,
        fold_seed: int = 0,
        split_lists: dict[str, str] | None = None,
        on_bad_clip: str = "error",
    ):
        if on_bad_clip not in ("error", "skip"):
            raise DatasetError(f"dataset.on_bad_clip={on_bad_clip!r} must be error or skip")
        self.on_bad_clip = on_bad_clip
        self.name = name
        self.root = root
        self.n_folds = int(n_folds)
        self.fold_seed = int(fold_seed)
        self.split_lists = dict(split_lists) if split_lists else None

    def scan(self) -> tuple[Path, list[tuple[str, Path]]]:
        """The root, and (label, path) for every audio file one level below it."""
        root = require_root(self.root, self.name, "point it at a folder holding one sub-folder of audio files per class")
        classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        found = [(c.name, f) for c in classes for f in audio_files(c)]
        if not found:
            raise DatasetError(
                f"dataset.root={root} holds no audio files in class sub-folders "
                "(expected <root>/<class>/<clip>.wav|.au|.flac|.mp3|.ogg)"
            )
        return root, found

    def index(self, mode: str = "honest") -> ClipIndex:
        root, found = self.scan()
        clip_id = lambda path: path.relative_to(root).with_suffix("").as_posix()  # noqa: E731
        if self.split_lists:
            return self._index_from_lists(root, found, clip_id)
        labels = [label for label, _ in found]
        if len(set(labels)) < 2:
            raise DatasetError(
                f"dataset.root={root} has {len(set(labels))} class folder(s) with audio ({', '.join(sorted(set(labels)))}); "
                "a classification needs at least two sub-folders of audio files"
            )
        folds = stratified_folds(labels, self.n_folds, self.fold_seed)
        clips = [Clip(clip_id(p), str(p), label, fold=k) for (label, p), k in zip(found, folds)]
        return ClipIndex(self.name, clips, "folds", {"fold_seed": str(self.fold_seed)})

    def _index_from_lists(self, root: Path, found, clip_id) -> ClipIndex:
        by_id = {clip_id(p): (label, p) for label, p in found}
        missing = set(PARTITIONS) - set(self.split_lists)
        if missing:
            raise DatasetError(f"dataset.split_lists needs {', '.join(PARTITIONS)}; missing {', '.join(sorted(missing))}")
        clips: dict[str, Clip] = {}
        for partition in PARTITIONS:
            key = f"dataset.split_lists.{partition}"
            for rel in read_list(Path(self.split_lists[partition]).expanduser(), key):
                cid = Path(rel).with_suffix("").as_posix()
                if cid not in by_id:
                    raise DatasetError(f"{key} names {rel}, which is not under dataset.root={root}")
                if cid in clips:
                    raise DatasetError(
                        f"{key} names {rel}, already listed in {clips[cid].partition}; a clip belongs to one partition"
                    )
                label, path = by_id[cid]
                clips[cid] = Clip(cid, str(path), label, partition=partition)
        return ClipIndex(self.name, list(clips.values()), "partitions")
