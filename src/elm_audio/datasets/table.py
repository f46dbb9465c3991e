"""Any collection described by a CSV (``dataset=table dataset.root=<folder> dataset.manifest=<csv>``).

Columns (a header row; any others are ignored):

- ``path``: the audio file, relative to ``dataset.root`` (or absolute). The clip id is the path
  as written, without its extension (relative to the root where an absolute path lies below it).
- exactly one of ``label`` (one class a clip: multiclass), ``labels`` (tags separated by ``;``,
  an empty cell meaning no tag: multilabel) or ``target`` (a number: regression).
- optional ``fold`` (whole numbers from 1: the task's own folds), or ``split`` (``train``,
  ``validation`` or ``test``; ``valid`` is read as ``validation``, HEAR's name), not both.
- optional ``group``: what must not be split (a recording, a speaker); an empty cell is a group
  of its own. Without the column, ``dataset.group`` (a pattern over paths) still applies.

Without ``fold`` or ``split`` the clips are split into ``dataset.n_folds`` folds, shuffled with
``dataset.fold_seed``, never splitting a group, and stratified by kind:

- multiclass: by label (StratifiedKFold, StratifiedGroupKFold with groups);
- multilabel: by tags, iterative stratification (Sechidis et al. 2011, Szymański and Kajdanowicz
  2017) from the ``iterative-stratification`` package. With groups, each group is one item whose
  tags are the union of its clips' tags; the groups are stratified, so the balance is over groups
  rather than clips;
- regression: by quantile bins of the target (equal-count bins by rank, at most 10 and none with
  fewer clips than folds), StratifiedKFold or StratifiedGroupKFold over the bins.

The tag vocabulary is every tag seen, sorted by name; ``dataset.vocabulary=<file>`` (one tag a
line, in the order the columns of y should have) fixes it instead, and a cell naming a tag that
file lacks is refused.
"""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import shown
from .base import Dataset, require_root
from .folder import split_folds, stratified_folds
from .index import (
    PARTITIONS,
    TAG_SEPARATOR,
    Clip,
    DatasetError,
    Survey,
    label_for_tags,
    label_for_target,
)

KIND_COLUMNS = {"label": "multiclass", "labels": "multilabel", "target": "regression"}
SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "test": "test"}
MAX_BINS = 10
LAYOUT = (
    "expected a CSV with a header row: a path column, one of label / labels / target, and optionally "
    "fold or split, and group"
)


def multilabel_folds(y: np.ndarray, n_folds: int, seed: int | None, groups: list[str] | None = None) -> list[int]:
    """A 1-based fold per row of the indicator matrix ``y``, by iterative stratification; with
    ``groups``, the groups are stratified (each by the union of its rows' tags) and every row
    takes its group's fold."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if groups is None:
        names, of_row = list(range(len(y))), np.arange(len(y))
        items = y
    else:
        names = sorted(set(groups))
        position = {g: i for i, g in enumerate(names)}
        of_row = np.array([position[g] for g in groups])
        items = np.zeros((len(names), y.shape[1]), dtype=y.dtype)
        np.maximum.at(items, of_row, y)
    if len(names) < n_folds:
        what = "group(s)" if groups is not None else "clip(s)"
        raise DatasetError(f"{len(names)} {what}, fewer than dataset.n_folds={n_folds}; add clips or lower dataset.n_folds")
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=seed is not None, random_state=seed)
    item_fold = np.zeros(len(names), dtype=int)
    for k, (_, test) in enumerate(splitter.split(np.zeros((len(names), 1)), items), start=1):
        item_fold[test] = k
    return item_fold[of_row].tolist()


def target_bins(targets: np.ndarray, n_folds: int) -> np.ndarray:
    """Equal-count bins of the targets by rank (ties in file order): at most ``MAX_BINS``, each
    holding at least ``n_folds`` values."""
    n = len(targets)
    n_bins = max(1, min(MAX_BINS, n // n_folds))
    rank = np.empty(n, dtype=int)
    rank[np.argsort(targets, kind="stable")] = np.arange(n)
    return rank * n_bins // n


def target_folds(targets: np.ndarray, n_folds: int, seed: int | None, groups: list[str] | None = None) -> list[int]:
    """A 1-based fold per value, stratified by quantile bins of the target; with ``groups``,
    every group's values share one fold."""
    if len(targets) < n_folds:
        raise DatasetError(f"{len(targets)} clip(s), fewer than dataset.n_folds={n_folds}; add clips or lower dataset.n_folds")
    bins = target_bins(np.asarray(targets, dtype=float), n_folds)
    too_few = "{} group(s), fewer than dataset.n_folds={}; check the groups or lower dataset.n_folds"
    return split_folds(bins, n_folds, seed, groups, too_few)


def read_vocabulary(path: Path, key: str = "dataset.vocabulary") -> tuple[str, ...]:
    """Tags one a line (blank lines ignored), in order."""
    if not path.is_file():
        raise DatasetError(f"{key}={path}: no such file (one tag a line)")
    tags = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    twice = sorted({t for t in tags if tags.count(t) > 1})
    if twice:
        raise DatasetError(f"{path} names the tag {twice[0]!r} more than once")
    return tuple(tags)


class Table(Dataset):
    hint = LAYOUT

    def __init__(
        self,
        root: str | None,
        manifest: str | None = None,
        name: str = "table",
        vocabulary: str | None = None,
        n_folds: int = 5,
        fold_seed: int = 0,
        on_bad_clip: str = "error",
        group: str | None = None,
    ):
        super().__init__(name, root, on_bad_clip, group)
        self.manifest = None if manifest in (None, "", "???") else str(manifest)
        self.vocabulary_file = None if vocabulary in (None, "", "???") else str(vocabulary)
        self.n_folds = int(n_folds)
        self.fold_seed = int(fold_seed)

    def manifest_path(self, root: Path) -> Path:
        """``dataset.manifest``: absolute, or relative to the current folder, else to the root;
        unset, ``<root>/manifest.csv``."""
        if self.manifest is None:
            path = root / "manifest.csv"
            if not path.is_file():
                raise DatasetError(f"dataset={self.name} needs dataset.manifest=<csv> ({path} not found); {LAYOUT}")
            return path
        given = Path(self.manifest).expanduser()
        for path in (given, root / given) if not given.is_absolute() else (given,):
            if path.is_file():
                return path.resolve()
        raise DatasetError(f"dataset.manifest={self.manifest}: no such file (looked in the current folder and in {root})")

    def survey(self, mode: str = "honest") -> Survey:
        root = require_root(self.root, self.name, LAYOUT)
        table = self.manifest_path(root)
        with table.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = columns
            rows = list(enumerate(reader, start=2))
        if "path" not in columns:
            raise DatasetError(f"{table} has no column 'path' (its columns: {', '.join(columns) or 'none'}); {LAYOUT}")
        kinds = [c for c in KIND_COLUMNS if c in columns]
        if len(kinds) != 1:
            which = "none" if not kinds else " and ".join(kinds)
            raise DatasetError(
                f"{table} needs exactly one of the columns label (multiclass), labels (multilabel, tags separated "
                f"by ';') or target (regression); it has {which}"
            )
        column = kinds[0]
        kind = KIND_COLUMNS[column]
        if "fold" in columns and "split" in columns:
            raise DatasetError(f"{table} has both a fold and a split column; keep one (or neither, for k-fold)")
        if not rows:
            raise DatasetError(f"{table} lists no clips")
        vocabulary = read_vocabulary(Path(self.vocabulary_file).expanduser()) if self.vocabulary_file else None
        if vocabulary is not None and kind != "multilabel":
            raise DatasetError(f"dataset.vocabulary={self.vocabulary_file} applies to a labels column (multilabel); {table} has {column}")

        clips: list[Clip] = []
        missing: list[str] = []
        seen: dict[str, int] = {}
        for line, row in rows:
            rel = (row.get("path") or "").strip()
            if not rel:
                raise DatasetError(f"{table} line {line}: the path cell is empty")
            path = Path(rel).expanduser()
            full = path if path.is_absolute() else root / path
            cid = self._clip_id(rel, full, root)
            if cid in seen:
                raise DatasetError(f"{table} line {line}: {rel} is listed already on line {seen[cid]}; list each clip once")
            seen[cid] = line
            fields = self._task_fields(table, line, column, row.get(column), vocabulary)
            fold, partition = self._split_of(table, line, row)
            group = ((row.get("group") or "").strip() or cid) if "group" in columns else None
            if not full.is_file():
                missing.append(rel)
                continue
            clips.append(Clip(cid, str(full), fold=fold, partition=partition, group=group, **fields))
        if missing:
            raise DatasetError(
                f"{table} names {len(missing)} file(s) not found under {root}, e.g. {missing[0]}; "
                "correct the paths (relative to dataset.root) or remove their rows"
            )
        if "group" not in columns and self.pattern is not None:
            clips = [replace(c, group=self.group_of(self._relative(c.path, root))) for c in clips]

        tags_seen = sorted({t for c in clips for t in c.tags})
        vocab = vocabulary if vocabulary is not None else tuple(tags_seen)
        if kind == "multilabel":
            order = {t: i for i, t in enumerate(vocab)}
            ordered = [tuple(sorted(c.tags, key=order.get)) for c in clips]
            clips = [replace(c, tags=tags, label=label_for_tags(tags)) for c, tags in zip(clips, ordered)]

        notes = {"manifest": str(table)}
        if "fold" in columns:
            return Survey(clips, "folds", root, notes=notes, kind=kind, vocabulary=vocab)
        if "split" in columns:
            return Survey(clips, "partitions", root, notes=notes, kind=kind, vocabulary=vocab)
        clips = self._k_fold(clips, kind, vocab)
        return Survey(clips, "folds", root, notes={**notes, "fold_seed": str(self.fold_seed)}, kind=kind, vocabulary=vocab)

    @staticmethod
    def _clip_id(rel: str, full: Path, root: Path) -> str:
        if Path(rel).is_absolute():
            try:
                return full.resolve().relative_to(root).with_suffix("").as_posix()
            except ValueError:
                return full.with_suffix("").as_posix()
        return Path(rel).with_suffix("").as_posix()

    @staticmethod
    def _relative(path: str, root: Path) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return path

    @staticmethod
    def _task_fields(table: Path, line: int, column: str, cell: str | None, vocabulary: tuple[str, ...] | None) -> dict:
        """Clip's label, tags or target from its cell."""
        cell = (cell or "").strip()
        if column == "label":
            if not cell:
                raise DatasetError(f"{table} line {line}: the label cell is empty; every clip needs a class")
            return {"label": cell}
        if column == "labels":
            tags = []
            for tag in (t.strip() for t in cell.split(TAG_SEPARATOR)):
                if tag and tag not in tags:
                    tags.append(tag)
            if vocabulary is not None:
                unknown = [t for t in tags if t not in vocabulary]
                if unknown:
                    raise DatasetError(
                        f"{table} line {line}: tag {unknown[0]!r} is not in the vocabulary file; add it there or correct the row"
                    )
            return {"label": label_for_tags(tags), "tags": tuple(tags)}
        try:
            target = float(cell)
        except ValueError:
            target = None
        if target is None or not math.isfinite(target):
            raise DatasetError(f"{table} line {line}: target {shown(cell)} is not a finite number; correct the row or remove it")
        return {"label": label_for_target(target), "target": target}

    @staticmethod
    def _split_of(table: Path, line: int, row: dict) -> tuple[int | None, str | None]:
        if "fold" in row:
            cell = (row.get("fold") or "").strip()
            try:
                fold = int(cell)
            except ValueError:
                fold = 0
            if fold < 1:
                raise DatasetError(f"{table} line {line}: fold {shown(cell)} is not a whole number from 1")
            return fold, None
        if "split" in row:
            cell = (row.get("split") or "").strip()
            if cell.lower() not in SPLIT_NAMES:
                raise DatasetError(f"{table} line {line}: split {shown(cell)} is not one of {', '.join(PARTITIONS)}")
            return None, SPLIT_NAMES[cell.lower()]
        return None, None

    def _k_fold(self, clips: list[Clip], kind: str, vocabulary: tuple[str, ...]) -> list[Clip]:
        groups = [c.group for c in clips] if any(c.group is not None for c in clips) else None
        seed = self.fold_seed
        if kind == "multiclass":
            folds = stratified_folds([c.label for c in clips], self.n_folds, seed, groups)
        elif kind == "multilabel":
            column = {t: j for j, t in enumerate(vocabulary)}
            y = np.zeros((len(clips), len(vocabulary)), dtype=np.uint8)
            for i, c in enumerate(clips):
                y[i, [column[t] for t in c.tags]] = 1
            folds = multilabel_folds(y, self.n_folds, seed, groups)
        else:
            folds = target_folds(np.array([c.target for c in clips]), self.n_folds, seed, groups)
        return [replace(c, fold=k) for c, k in zip(clips, folds)]
