"""The clip index every dataset produces, and how datasets say what is wrong with a copy."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PARTITIONS = ("train", "validation", "test")
AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".mp3", ".ogg")

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


def require_root(root: str | None, dataset: str, hint: str) -> Path:
    """The dataset's root folder, or a DatasetError that says how to set it."""
    if root in (None, "", "???"):
        raise DatasetError(f"dataset={dataset} needs dataset.root=<folder>: {hint}")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DatasetError(f"dataset.root={root} is not a folder. {hint}")
    return path.resolve()


def audio_files(folder: Path) -> list[Path]:
    """Audio files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


class Dataset:
    """A configured dataset: ``index(mode)`` lists its clips and assigns folds or partitions.

    ``mode`` is the protocol mode (honest or paper); some datasets fold differently under it.
    """

    name: str

    def index(self, mode: str = "honest") -> ClipIndex:
        raise NotImplementedError
