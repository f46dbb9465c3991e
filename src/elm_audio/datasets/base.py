"""The clip index every dataset produces, and how datasets say what is wrong with a copy."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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

    @property
    def group(self) -> str:
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


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class Dataset:
    """A configured dataset.

    ``survey(mode)`` lists what the protocol needs and what was found; ``index(mode)`` turns it
    into a ClipIndex, refusing a copy that misses files the protocol needs. ``mode`` is the
    protocol mode (honest or paper): some datasets fold differently under it.
    """

    name: str
    on_bad_clip: str = "error"
    expected: Expected = Expected()
    hint: str = ""  # how to lay the dataset out, for error messages

    def __init__(self, name: str, root: str | None, on_bad_clip: str = "error"):
        if on_bad_clip not in BAD_CLIP_POLICIES:
            raise DatasetError(f"dataset.on_bad_clip={on_bad_clip!r} must be one of {', '.join(BAD_CLIP_POLICIES)}")
        self.name = name
        self.root = root
        self.on_bad_clip = on_bad_clip

    def survey(self, mode: str = "honest") -> Survey:
        raise NotImplementedError

    def index(self, mode: str = "honest") -> ClipIndex:
        return self.to_index(self.survey(mode))

    def to_index(self, survey: Survey) -> ClipIndex:
        if survey.missing:
            from .check import CheckReport  # the full report says what else is wrong with the copy

            report = CheckReport.from_survey(self, survey)
            raise DatasetError(
                f"dataset.root={survey.root} lacks {len(survey.missing)} file(s) the {self.name} protocol needs.\n"
                + report.render()
            )
        return ClipIndex(self.name, survey.clips, survey.protocol, survey.notes)
