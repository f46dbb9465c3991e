"""The dataset interface, and the layout helpers the datasets share."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from ..config import shown
from .check import CheckReport
from .index import (
    AUDIO_EXTENSIONS,
    BAD_CLIP_POLICIES,
    Clip,
    ClipIndex,
    DatasetError,
    Expected,
    Survey,
)


def require_root(root: str | None, dataset: str, hint: str) -> Path:
    """The dataset's root folder, or a DatasetError that says how to set it."""
    if root in (None, "", "???"):
        raise DatasetError(f"dataset={dataset} needs dataset.root=<folder>: {hint}")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DatasetError(f"dataset.root={root} is not a folder. {hint}")
    return path.resolve()


def hidden(path: Path) -> bool:
    """Hidden files, and the ``._name`` AppleDouble files macOS leaves beside copied ones."""
    return path.name.startswith(".")


def audio_files(folder: Path) -> list[Path]:
    """Audio files directly in ``folder``, sorted by name; hidden ones and broken links left out
    (the data check lists the links)."""
    return sorted(p for p in folder.iterdir() if not hidden(p) and p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not hidden(p))


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
    own_protocol: bool = False  # its folds or splits were fixed by its authors for its task: only the honest protocol applies

    def __init__(self, name: str, root: str | None, on_bad_clip: str = "error", group: str | None = None):
        if on_bad_clip not in BAD_CLIP_POLICIES:
            raise DatasetError(f"dataset.on_bad_clip={shown(on_bad_clip)} must be one of {', '.join(BAD_CLIP_POLICIES)}")
        self.name = name
        self.root = root
        self.on_bad_clip = on_bad_clip
        self.group = group
        self.pattern = None
        if group:
            try:
                self.pattern = re.compile(str(group))
            except re.error as err:
                raise DatasetError(f"dataset.group={shown(group)} is not a regular expression ({err})") from None

    def group_of(self, relative_path: str) -> str:
        """The group a clip belongs to, from ``dataset.group``: the first group of the pattern's
        match in the clip's path below the root (the whole match if it has none); a clip the
        pattern does not match is a group of its own."""
        match = self.pattern.search(relative_path) if self.pattern else None
        if match is None:
            return relative_path
        return match.group(1) if match.groups() else match.group(0)

    def groups_for(self, relative_paths: list[str]) -> list[str] | None:
        """Each clip's group, or None without ``dataset.group``."""
        return [self.group_of(p) for p in relative_paths] if self.pattern else None

    def with_groups(self, clips: list[Clip], root: Path) -> list[Clip]:
        """Clips of fixed splits with their groups filled in (to report groups that straddle them)."""
        groups = self.groups_for([Path(c.path).relative_to(root).as_posix() for c in clips])
        return clips if groups is None else [replace(c, group=g) for c, g in zip(clips, groups)]

    def survey(self, mode: str = "honest") -> Survey:
        raise NotImplementedError

    def index(self, mode: str = "honest") -> ClipIndex:
        return self.to_index(self.survey(mode))

    def to_index(self, survey: Survey) -> ClipIndex:
        if survey.missing:
            report = CheckReport.from_survey(self, survey)
            raise DatasetError(
                f"dataset.root={survey.root} lacks {len(survey.missing)} file(s) the {self.name} protocol needs.\n"
                + report.render()
            )
        return ClipIndex(self.name, survey.clips, survey.protocol, survey.notes, kind=survey.kind, vocabulary=survey.vocabulary)
