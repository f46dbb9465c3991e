"""Any collection laid out as one sub-folder of audio files per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..config import shown
from .base import Dataset, audio_files, require_root, subfolders
from .index import PARTITIONS, Clip, DatasetError, Survey


def stratified_folds(labels: list[str], n_folds: int, seed: int | None, groups: list[str] | None = None) -> list[int]:
    """A 1-based fold per item, stratified by label; ``seed=None`` keeps the order (no
    shuffling). With ``groups``, every group's items share one fold (StratifiedGroupKFold)."""
    counts = {label: labels.count(label) for label in set(labels)}
    smallest = min(counts, key=counts.get)
    if counts[smallest] < n_folds:
        raise DatasetError(
            f"class {shown(smallest)} has {counts[smallest]} clip(s), fewer than dataset.n_folds={n_folds}; "
            "add clips or lower dataset.n_folds"
        )
    too_few = "dataset.group gives {} group(s), fewer than dataset.n_folds={}; check the pattern or lower dataset.n_folds"
    return split_folds(labels, n_folds, seed, groups, too_few)


def split_folds(strata, n_folds: int, seed: int | None, groups: list[str] | None, too_few_groups: str) -> list[int]:
    """A 1-based fold per item, stratified by ``strata`` (StratifiedKFold; ``seed=None`` keeps the
    order); with ``groups``, every group's items share one fold (StratifiedGroupKFold), and fewer
    groups than folds is an error: ``too_few_groups`` formatted with the groups' and folds' counts."""
    folds = np.zeros(len(strata), dtype=int)
    if groups is None:
        splits = StratifiedKFold(n_folds, shuffle=seed is not None, random_state=seed).split(np.zeros(len(strata)), strata)
    else:
        if len(set(groups)) < n_folds:
            raise DatasetError(too_few_groups.format(len(set(groups)), n_folds))
        splitter = StratifiedGroupKFold(n_folds, shuffle=seed is not None, random_state=seed)
        splits = splitter.split(np.zeros(len(strata)), strata, groups)
    for k, (_, test) in enumerate(splits, start=1):
        folds[test] = k
    return folds.tolist()


def read_list(path: Path, key: str) -> list[str]:
    """Relative clip paths, one a line, as in the GTZAN split lists."""
    if not path.is_file():
        raise DatasetError(f"{key}={path}: no such list file")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def assign_partitions(found: dict[str, tuple[str, Path]], lists: dict[str, list[str]], key: str) -> tuple[list[Clip], list[str]]:
    """Clips of each partition list, matched by clip id (the path without extension), and the
    listed entries that were not found."""
    clips: dict[str, Clip] = {}
    missing: list[str] = []
    for partition in PARTITIONS:
        for rel in lists[partition]:
            cid = Path(rel).with_suffix("").as_posix()
            if cid in clips:
                raise DatasetError(
                    f"{key}.{partition} names {rel}, already listed in {clips[cid].partition}; "
                    "a clip belongs to one partition"
                )
            if cid not in found:
                missing.append(rel)
                continue
            label, path = found[cid]
            clips[cid] = Clip(cid, str(path), label, partition=partition)
    return list(clips.values()), missing


class Folder(Dataset):
    """``root/<class>/<clip>.<ext>``. Split by stratified k-fold (shuffled with ``fold_seed``),
    or by ``split_lists`` (train / validation / test files naming clips relative to the root)."""

    hint = "point it at a folder holding one sub-folder of audio files per class"

    def __init__(
        self,
        root: str | None,
        name: str = "folder",
        n_folds: int = 10,
        fold_seed: int = 0,
        split_lists: dict[str, str] | None = None,
        on_bad_clip: str = "error",
        group: str | None = None,
    ):
        super().__init__(name, root, on_bad_clip, group)
        self.n_folds = int(n_folds)
        self.fold_seed = int(fold_seed)
        self.split_lists = {k: v for k, v in (split_lists or {}).items() if v is not None} or None

    def scan(self) -> tuple[Path, dict[str, tuple[str, Path]]]:
        """The root, and clip id -> (label, path) for every audio file one level below it."""
        root = require_root(self.root, self.name, self.hint)
        found: dict[str, tuple[str, Path]] = {}
        for folder in subfolders(root):
            for f in audio_files(folder):
                cid = f.relative_to(root).with_suffix("").as_posix()
                if cid in found:
                    raise DatasetError(
                        f"dataset {self.name}: one clip stored twice under one name, {found[cid][1]} and {f}; "
                        "keep one file per clip"
                    )
                found[cid] = (folder.name, f)
        if not found:
            raise DatasetError(
                f"dataset.root={root} holds no audio files in class sub-folders "
                "(expected <root>/<class>/<clip>.wav|.au|.flac|.mp3|.ogg)"
            )
        return root, found

    def survey(self, mode: str = "honest") -> Survey:
        root, found = self.scan()
        if self.split_lists:
            missing_keys = set(PARTITIONS) - set(self.split_lists)
            if missing_keys:
                raise DatasetError(
                    f"dataset.split_lists needs {', '.join(PARTITIONS)}; missing {', '.join(sorted(missing_keys))}"
                )
            lists = {
                p: read_list(Path(self.split_lists[p]).expanduser(), f"dataset.split_lists.{p}") for p in PARTITIONS
            }
            clips, missing = assign_partitions(found, lists, "dataset.split_lists")
            return Survey(self.with_groups(clips, root), "partitions", root, missing=missing)
        labels = [label for label, _ in found.values()]
        if len(set(labels)) < 2:
            raise DatasetError(
                f"dataset.root={root} has {len(set(labels))} class folder(s) with audio "
                f"({', '.join(sorted(set(labels)))}); a classification needs at least two sub-folders of audio files"
            )
        groups = self.groups_for([path.relative_to(root).as_posix() for _, path in found.values()])
        folds = stratified_folds(labels, self.n_folds, self.fold_seed, groups)
        clips = [
            Clip(cid, str(path), label, fold=k, group=None if groups is None else groups[i])
            for i, ((cid, (label, path)), k) in enumerate(zip(found.items(), folds))
        ]
        return Survey(clips, "folds", root, notes={"fold_seed": str(self.fold_seed)})
