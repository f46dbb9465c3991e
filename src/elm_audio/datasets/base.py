"""The dataset interface, and the layout helpers the datasets share."""

from __future__ import annotations

from pathlib import Path

from .check import CheckReport
from .index import AUDIO_EXTENSIONS, BAD_CLIP_POLICIES, ClipIndex, DatasetError, Expected, Survey


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
            report = CheckReport.from_survey(self, survey)
            raise DatasetError(
                f"dataset.root={survey.root} lacks {len(survey.missing)} file(s) the {self.name} protocol needs.\n"
                + report.render()
            )
        return ClipIndex(self.name, survey.clips, survey.protocol, survey.notes)
