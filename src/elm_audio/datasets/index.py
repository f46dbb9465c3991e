"""What every dataset produces: its clips with labels and folds or partitions (a ClipIndex),
and what a copy on disk holds against what its protocol needs (a Survey).

A dataset is of one task kind (``ClipIndex.kind``):

- ``multiclass``: one label a clip (``Clip.label``); ``vocabulary`` is the sorted labels.
- ``multilabel``: any number of tags a clip (``Clip.tags``, in vocabulary order, possibly none);
  ``vocabulary`` is the tags in the order the dataset defines (HEAR: labelvocabulary.csv's idx;
  MagnaTagATune: by frequency; a table: its vocabulary file, else by name).
- ``regression``: one number a clip (``Clip.target``); ``vocabulary`` is empty.

``Clip.label`` is a string for every kind, so that code that lists, groups, hashes or stores
labels keeps working: for multilabel the clip's tags joined by ``;`` in vocabulary order (``""``:
no tag), for regression ``repr`` of the target (``label_for_tags`` / ``label_for_target``). The
model's y comes from ``ClipIndex.y()``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

PARTITIONS = ("train", "validation", "test")
AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".mp3", ".ogg")
BAD_CLIP_POLICIES = ("error", "skip")

ProtocolKind = Literal["partitions", "folds"]
TaskKind = Literal["multiclass", "multilabel", "regression"]
TASK_KINDS: tuple[str, ...] = ("multiclass", "multilabel", "regression")
TAG_SEPARATOR = ";"


class DatasetError(ValueError):
    """A dataset that cannot be read as configured; the message says which key or file and what to do."""


@dataclass(frozen=True)
class Clip:
    clip_id: str  # stable and unique within the dataset: the path below the root, no extension
    path: str
    label: str
    fold: int | None = None  # 1-based, for datasets evaluated by cross-validation
    partition: str | None = None  # train / validation / test, for fixed partitions
    group: str | None = None  # what must not be split (a track, an artist, a recording): dataset.group
    tags: tuple[str, ...] = ()  # multilabel: the clip's tags, in vocabulary order (label: label_for_tags(tags))
    target: float | None = None  # regression: the number to predict (label: label_for_target(target))

    @property
    def split(self) -> str:
        """The partition or fold the clip belongs to."""
        return self.partition if self.partition is not None else f"fold{self.fold}"


def label_for_tags(tags: tuple[str, ...] | list[str]) -> str:
    """A multilabel clip's ``Clip.label``: its tags (in vocabulary order) joined by ``;``."""
    return TAG_SEPARATOR.join(tags)


def label_for_target(target: float) -> str:
    """A regression clip's ``Clip.label``: the target's shortest exact decimal form."""
    return repr(float(target))


@dataclass
class ClipIndex:
    """The clips of a dataset, how they are split for evaluation, and the task's kind.

    ``vocabulary``: multiclass, the sorted labels of the clips (filled in; a value given is
    ignored, as ``labels`` always was); multilabel, the tags in the dataset's order (given, or the
    sorted tags of the clips); regression, empty.
    """

    dataset: str
    clips: list[Clip]
    protocol: ProtocolKind
    notes: dict[str, str] = field(default_factory=dict)
    kind: TaskKind = "multiclass"
    vocabulary: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise DatasetError(f"dataset {self.dataset}: task kind {self.kind!r} is not one of {', '.join(TASK_KINDS)}")
        ids = Counter(c.clip_id for c in self.clips)
        dupes = sorted(i for i, n in ids.items() if n > 1)
        if dupes:
            files = [c.path for c in self.clips if c.clip_id == dupes[0]]
            raise DatasetError(
                f"dataset {self.dataset}: {len(dupes)} clip(s) stored twice under one name, e.g. "
                f"{' and '.join(files)}; keep one file per clip"
            )
        if self.kind == "multiclass":
            labels = {c.label for c in self.clips}
            if len(labels) < 2:
                raise DatasetError(
                    f"dataset {self.dataset}: found {len(labels)} class(es) ({', '.join(sorted(labels)) or 'none'}); "
                    "a classification needs at least two. Check dataset.root."
                )
            self.vocabulary = tuple(sorted(labels))
        elif self.kind == "multilabel":
            self._check_tags()
        else:
            self._check_targets()
        if self.protocol == "folds" and any(c.fold is None for c in self.clips):
            raise DatasetError(f"dataset {self.dataset}: every clip needs a fold")
        if self.protocol == "partitions":
            missing = set(PARTITIONS) - {c.partition for c in self.clips}
            if missing:
                raise DatasetError(f"dataset {self.dataset}: no clips in partition(s) {', '.join(sorted(missing))}")

    def _check_tags(self) -> None:
        vocabulary = tuple(str(t) for t in self.vocabulary) or tuple(sorted({t for c in self.clips for t in c.tags}))
        if len(set(vocabulary)) != len(vocabulary):
            twice = sorted(t for t, n in Counter(vocabulary).items() if n > 1)
            raise DatasetError(f"dataset {self.dataset}: the tag vocabulary names {', '.join(twice)} more than once")
        if len(vocabulary) < 2:
            raise DatasetError(
                f"dataset {self.dataset}: found {len(vocabulary)} tag(s) ({', '.join(vocabulary) or 'none'}); "
                "multi-label tagging needs at least two. Check dataset.root."
            )
        known = set(vocabulary)
        for c in self.clips:
            unknown = [t for t in c.tags if t not in known]
            if unknown:
                raise DatasetError(
                    f"dataset {self.dataset}: clip {c.clip_id} has tag {unknown[0]!r}, which is not in the "
                    "vocabulary; add it to the vocabulary or correct the clip's tags"
                )
        self.vocabulary = vocabulary

    def _check_targets(self) -> None:
        for c in self.clips:
            if c.target is None or isinstance(c.target, bool) or not math.isfinite(c.target):
                raise DatasetError(
                    f"dataset {self.dataset}: clip {c.clip_id} has target {c.target!r}; a regression needs a finite number for every clip"
                )
        distinct = {float(c.target) for c in self.clips}
        if len(distinct) < 2:
            raise DatasetError(
                f"dataset {self.dataset}: found {len(distinct)} distinct target value(s); a regression needs at least two. "
                "Check dataset.root."
            )
        self.vocabulary = ()

    @property
    def labels(self) -> list[str]:
        """Multiclass: the sorted labels (as always). Multilabel: the tags in vocabulary order.
        Regression: empty."""
        if self.kind == "multiclass":
            return sorted({c.label for c in self.clips})
        return list(self.vocabulary)

    @property
    def folds(self) -> list[int]:
        return sorted({c.fold for c in self.clips if c.fold is not None})

    def y(self) -> np.ndarray:
        """The model's y, one row per clip in ``clips`` order: multiclass, the labels (an array
        of str, as ``np.array([c.label for c in clips])``); multilabel, an (n_clips, n_tags)
        uint8 indicator matrix, columns in ``vocabulary`` order; regression, float64 targets."""
        if self.kind == "multiclass":
            return np.array([c.label for c in self.clips])
        if self.kind == "multilabel":
            column = {t: j for j, t in enumerate(self.vocabulary)}
            y = np.zeros((len(self.clips), len(self.vocabulary)), dtype=np.uint8)
            for i, c in enumerate(self.clips):
                y[i, [column[t] for t in c.tags]] = 1
            return y
        return np.array([c.target for c in self.clips], dtype=np.float64)

    def without(self, clip_ids: set[str]) -> "ClipIndex":
        """The same index less some clips, same kind; a multilabel vocabulary is kept whole
        (a multiclass one is the remaining clips' labels, as ``labels`` always was)."""
        return ClipIndex(
            self.dataset,
            [c for c in self.clips if c.clip_id not in clip_ids],
            self.protocol,
            self.notes,
            kind=self.kind,
            vocabulary=self.vocabulary,
        )


@dataclass(frozen=True)
class Expected:
    """The counts a complete copy has; None where a dataset does not fix them."""

    total: int | None = None
    classes: tuple[str, ...] | None = None
    per_class: dict[str, int] | None = None
    per_group: dict[str, int] | None = None  # per partition or fold


@dataclass
class Survey:
    """What a copy on disk holds against what the protocol needs, without reading audio."""

    clips: list[Clip]  # the protocol's clips that were found
    protocol: ProtocolKind
    root: Path
    missing: list[str] = field(default_factory=list)  # files the protocol needs, not found (as named)
    extra: list[str] = field(default_factory=list)  # files or folders that should not be there
    notes: dict[str, str] = field(default_factory=dict)
    kind: TaskKind = "multiclass"
    vocabulary: tuple[str, ...] = ()  # multilabel: the tags in the dataset's order (ClipIndex.vocabulary)


class Described(Protocol):
    """What a data check needs to know of a dataset besides its survey."""

    name: str
    expected: Expected
    on_bad_clip: str
