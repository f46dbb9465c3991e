"""What every dataset produces: its clips with labels and folds or partitions (a ClipIndex),
and what a copy on disk holds against what its protocol needs (a Survey)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

PARTITIONS = ("train", "validation", "test")
AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".mp3", ".ogg")
BAD_CLIP_POLICIES = ("error", "skip")

ProtocolKind = Literal["partitions", "folds"]


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

    @property
    def split(self) -> str:
        """The partition or fold the clip belongs to."""
        return self.partition if self.partition is not None else f"fold{self.fold}"


@dataclass
class ClipIndex:
    """The clips of a dataset and how they are split for evaluation."""

    dataset: str
    clips: list[Clip]
    protocol: ProtocolKind
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = Counter(c.clip_id for c in self.clips)
        dupes = sorted(i for i, n in ids.items() if n > 1)
        if dupes:
            files = [c.path for c in self.clips if c.clip_id == dupes[0]]
            raise DatasetError(
                f"dataset {self.dataset}: {len(dupes)} clip(s) stored twice under one name, e.g. "
                f"{' and '.join(files)}; keep one file per clip"
            )
        labels = {c.label for c in self.clips}
        if len(labels) < 2:
            raise DatasetError(
                f"dataset {self.dataset}: found {len(labels)} class(es) ({', '.join(sorted(labels)) or 'none'}); "
                "a classification needs at least two. Check dataset.root."
            )
        if self.protocol == "folds" and any(c.fold is None for c in self.clips):
            raise DatasetError(f"dataset {self.dataset}: every clip needs a fold")
        if self.protocol == "partitions":
            missing = set(PARTITIONS) - {c.partition for c in self.clips}
            if missing:
                raise DatasetError(f"dataset {self.dataset}: no clips in partition(s) {', '.join(sorted(missing))}")

    @property
    def labels(self) -> list[str]:
        return sorted({c.label for c in self.clips})

    @property
    def folds(self) -> list[int]:
        return sorted({c.fold for c in self.clips if c.fold is not None})

    def without(self, clip_ids: set[str]) -> "ClipIndex":
        return ClipIndex(self.dataset, [c for c in self.clips if c.clip_id not in clip_ids], self.protocol, self.notes)


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


class Described(Protocol):
    """What a data check needs to know of a dataset besides its survey."""

    name: str
    expected: Expected
    on_bad_clip: str
