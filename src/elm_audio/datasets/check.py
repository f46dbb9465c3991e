"""What is wrong with a copy of a dataset, said before hours of extraction start.

Reads the layout and every file's header (not the audio), compares what it finds with the
counts a complete copy has, and renders a report; ``ok`` says whether the copy can give the
dataset's protocol.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..audio import AudioError, read_info
from .index import Described, Expected, Survey

SHOWN = 15  # names listed per category before "... and N more"


@dataclass
class CheckReport:
    dataset: str
    root: Path
    protocol: str
    expected: Expected
    on_bad_clip: str
    per_class: Counter
    per_group: Counter
    missing: list[str]
    extra: list[str]
    unreadable: dict[str, str] = field(default_factory=dict)  # clip id -> "file: reason"
    empty: dict[str, str] = field(default_factory=dict)  # clip id -> file
    sample_rates: Counter = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)
    headers_read: bool = False

    @classmethod
    def from_survey(cls, dataset: Described, survey: Survey, read_headers: bool = False, progress: bool = False) -> "CheckReport":
        report = cls(
            dataset=dataset.name,
            root=survey.root,
            protocol=survey.protocol,
            expected=dataset.expected,
            on_bad_clip=dataset.on_bad_clip,
            per_class=Counter(c.label for c in survey.clips),
            per_group=Counter(c.group for c in survey.clips),
            missing=list(survey.missing),
            extra=list(survey.extra),
        )
        if read_headers:
            report.headers_read = True
            for clip in tqdm(survey.clips, desc="reading headers", unit="file", disable=not progress):
                try:
                    info = read_info(clip.path)
                except AudioError as err:
                    name = _relative(clip.path, survey.root)
                    if "zero length" in err.reason:
                        report.empty[clip.clip_id] = name
                    else:
                        report.unreadable[clip.clip_id] = f"{name}: {err.reason}"
                    continue
                report.sample_rates[info.sample_rate] += 1
                report.durations.append(info.duration)
        return report

    @property
    def bad_clips(self) -> list[str]:
        return sorted(set(self.unreadable) | set(self.empty))

    @property
    def problems(self) -> list[str]:
        """What stops the dataset's protocol."""
        out = []
        if self.missing:
            out.append(f"{len(self.missing)} file(s) the protocol needs are missing")
        exp = self.expected
        found = sum(self.per_class.values())
        if exp.total is not None and found + len(self.missing) < exp.total and not self.missing:
            out.append(f"{found} clips where a complete copy has {exp.total}")
        if exp.classes is not None:
            absent = sorted(set(exp.classes) - set(self.per_class))
            if absent:
                out.append(f"no clips of class(es) {', '.join(absent)}")
        if self.bad_clips and self.on_bad_clip == "error":
            out.append(
                f"{len(self.bad_clips)} clip(s) cannot be read; replace them, or run with "
                "dataset.on_bad_clip=skip to leave them out (the run records which)"
            )
        return out

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.extra:
            out.append(f"{len(self.extra)} file(s) or folder(s) that are not part of the dataset (ignored)")
        if self.bad_clips and self.on_bad_clip == "skip":
            out.append(f"{len(self.bad_clips)} unreadable clip(s) will be skipped (dataset.on_bad_clip=skip)")
        exp = self.expected
        found = sum(self.per_class.values())
        if exp.total is not None and found > exp.total:
            out.append(f"{found} clips where the dataset has {exp.total}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        exp = self.expected
        found = sum(self.per_class.values())
        lines = [f"elm_audio data check: {self.dataset} at {self.root} ({self.protocol})"]
        total = f" of {exp.total} expected" if exp.total is not None else ""
        lines.append(f"  clips found    {found}{total}")
        lines.append("  per class      " + _counts(self.per_class, exp.per_class))
        group = "per partition " if self.protocol == "partitions" else "per fold      "
        lines.append(f"  {group} " + _counts(self.per_group, exp.per_group, key=_group_order))
        for title, names in (
            ("missing", self.missing),
            ("unreadable", sorted(self.unreadable.values())),
            ("zero-length", sorted(self.empty.values())),
            ("extra", self.extra),
        ):
            if names:
                lines.append(f"  {title} ({len(names)}):")
                lines += [f"    {n}" for n in names[:SHOWN]]
                if len(names) > SHOWN:
                    lines.append(f"    ... and {len(names) - SHOWN} more")
        if self.headers_read and self.durations:
            rates = ", ".join(f"{sr} Hz x {n}" for sr, n in sorted(self.sample_rates.items()))
            d = self.durations
            lines.append(f"  sample rates   {rates}")
            lines.append(
                f"  durations      {min(d):.2f} s to {max(d):.2f} s (median {statistics.median(d):.2f} s)"
            )
        for w in self.warnings:
            lines.append(f"  warning        {w}")
        if self.ok:
            lines.append("  result         OK: the copy gives the protocol")
        else:
            lines += [f"  problem        {p}" for p in self.problems]
            lines.append("  result         FAILED: the copy cannot give the protocol as it stands")
        return "\n".join(lines)


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _group_order(name: str) -> tuple:
    order = {"train": 0, "validation": 1, "test": 2}
    if name in order:
        return (0, order[name])
    return (1, int(name[4:])) if name.startswith("fold") and name[4:].isdigit() else (2, name)


def _counts(found: Counter, expected: dict[str, int] | None, key=None) -> str:
    names = sorted(set(found) | set(expected or {}), key=key)
    if expected is None:
        return ", ".join(f"{n} {found.get(n, 0)}" for n in names) or "none"
    return ", ".join(f"{n} {found.get(n, 0)}/{expected.get(n, 0)}" for n in names)
