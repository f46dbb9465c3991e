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

import numpy as np
from tqdm import tqdm  # not tqdm.auto: no widget warning where a notebook imports it

from ..sound.decode import SAMPLE_RATE, SILENCE, AudioError, load, read_info
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
    durations: dict[str, float] = field(default_factory=dict)  # clip id -> seconds
    headers_read: bool = False
    decoded: bool = False
    silent: list[str] = field(default_factory=list)  # files whose samples are all (near) zero
    broken_links: list[str] = field(default_factory=list)
    groups: dict[str, set[str]] = field(default_factory=dict)  # group -> the splits its clips are in
    kind: str = "multiclass"  # multilabel: per_class counts tags; regression: per_class is empty, targets
    targets: list[float] = field(default_factory=list)
    n_clips: int | None = None  # the survey's clips (None: the sum of per_class, a multiclass survey's count)

    @classmethod
    def from_survey(
        cls,
        dataset: Described,
        survey: Survey,
        read_headers: bool = False,
        progress: bool = False,
        decode_min_samples: int | None = None,
    ) -> "CheckReport":
        """The survey's counts against the expected ones; with ``read_headers`` every file's
        header (and its container's signature); with ``decode_min_samples`` every file decoded
        too, a clip shorter than that many samples at 12 kHz counted as unusable."""
        report = cls(
            dataset=dataset.name,
            root=survey.root,
            protocol=survey.protocol,
            expected=dataset.expected,
            on_bad_clip=dataset.on_bad_clip,
            per_class=per_class(survey),
            per_group=Counter(c.split for c in survey.clips),
            missing=list(survey.missing),
            extra=list(survey.extra),
            broken_links=broken_links(survey.root),
            kind=survey.kind,
            n_clips=len(survey.clips),
            targets=[c.target for c in survey.clips if c.target is not None] if survey.kind == "regression" else [],
        )
        for clip in survey.clips:
            if clip.group is not None:
                report.groups.setdefault(clip.group, set()).add(clip.split)
        decode = decode_min_samples is not None
        if read_headers or decode:
            report.headers_read, report.decoded = True, decode
            what = "decoding" if decode else "reading headers"
            for clip in tqdm(survey.clips, desc=what, unit="file", disable=not progress):
                report._inspect(clip.clip_id, clip.path, survey.root, decode_min_samples)
        return report

    def _inspect(self, clip_id: str, path: str, root: Path, min_samples: int | None) -> None:
        name = _relative(path, root)
        try:
            info = read_info(path)
            if min_samples is not None:
                signal = load(path)
                if len(signal) < min_samples:
                    raise AudioError(path, f"decodes to {len(signal) / SAMPLE_RATE:.3f} s, too short to use (audio.min_fraction)")
                if float(np.abs(signal).max()) < SILENCE:
                    self.silent.append(name)
        except AudioError as err:
            if "zero length" in err.reason:
                self.empty[clip_id] = name
            else:
                self.unreadable[clip_id] = f"{name}: {err.reason}"
            return
        self.sample_rates[info.sample_rate] += 1
        self.durations[clip_id] = info.duration

    @property
    def found(self) -> int:
        return self.n_clips if self.n_clips is not None else sum(self.per_class.values())

    @property
    def straddling(self) -> list[str]:
        """Groups with clips on both sides of a split: '<group>: fold1, fold4'."""
        return sorted(f"{g}: {', '.join(sorted(s, key=_group_order))}" for g, s in self.groups.items() if len(s) > 1)

    @property
    def short_outliers(self) -> list[str]:
        """Clips under a quarter of the median duration: a truncated file, or one from elsewhere."""
        if len(self.durations) < 4:
            return []
        median = statistics.median(self.durations.values())
        return sorted(cid for cid, d in self.durations.items() if d < median / 4)

    @property
    def bad_clips(self) -> list[str]:
        return sorted(set(self.unreadable) | set(self.empty))

    @property
    def problems(self) -> list[str]:
        """What stops the dataset's protocol."""
        out = []
        if self.missing:
            out.append(f"{len(self.missing)} file(s) the protocol needs are missing")
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
        if self.broken_links:
            out.append(f"{len(self.broken_links)} broken link(s) (their targets are gone; ignored)")
        if self.straddling:
            out.append(
                f"{len(self.straddling)} group(s) have clips on both sides of a split: excerpts of one source in "
                "training and test flatter every score"
            )
        if self.silent:
            out.append(f"{len(self.silent)} silent clip(s): all samples (near) zero; they are used, but check them")
        if self.short_outliers:
            out.append(
                f"{len(self.short_outliers)} clip(s) much shorter than the others (under a quarter of the median "
                f"duration), e.g. {self.short_outliers[0]}"
            )
        if self.bad_clips and self.on_bad_clip == "skip":
            out.append(f"{len(self.bad_clips)} unreadable clip(s) will be skipped (dataset.on_bad_clip=skip)")
        exp = self.expected
        found = self.found
        if exp.total is not None and found > exp.total:
            out.append(f"{found} clips where the dataset has {exp.total}")
        return out

    @property
    def incomplete(self) -> str | None:
        """The loud warning for a copy that gives the protocol with fewer clips or classes than
        the published dataset (a run gives the same; see ``incomplete_warning``)."""
        return incomplete_warning(self.dataset, self.expected, self.per_class, len(self.missing), self.found)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        exp = self.expected
        found = self.found
        lines = [f"elm_audio data check: {self.dataset} at {self.root} ({self.protocol})"]
        total = f" of {exp.total} expected" if exp.total is not None else ""
        lines.append(f"  clips found    {found}{total}")
        if self.kind == "regression":
            t = self.targets
            lines.append(f"  targets        {min(t):g} to {max(t):g} (median {statistics.median(t):g})" if t else "  targets        none")
        else:
            lines.append(("  per tag        " if self.kind == "multilabel" else "  per class      ") + _counts(self.per_class, exp.per_class))
        group = "per partition " if self.protocol == "partitions" else "per fold      "
        lines.append(f"  {group} " + _counts(self.per_group, exp.per_group, key=_group_order))
        if self.groups:
            lines.append(f"  groups         {len(self.groups)} (dataset.group), {len(self.straddling)} across splits")
        for title, names in (
            ("missing", self.missing),
            ("unreadable", sorted(self.unreadable.values())),
            ("zero-length", sorted(self.empty.values())),
            ("extra", self.extra),
            ("broken links", self.broken_links),
            ("groups across splits", self.straddling),
            ("silent", sorted(self.silent)),
            ("much shorter than the others", self.short_outliers),
        ):
            if names:
                lines.append(f"  {title} ({len(names)}):")
                lines += [f"    {n}" for n in names[:SHOWN]]
                if len(names) > SHOWN:
                    lines.append(f"    ... and {len(names) - SHOWN} more")
        if self.headers_read and self.durations:
            rates = ", ".join(f"{sr} Hz x {n}" for sr, n in sorted(self.sample_rates.items()))
            d = list(self.durations.values())
            lines.append(f"  sample rates   {rates}")
            lines.append(
                f"  durations      {min(d):.2f} s to {max(d):.2f} s (median {statistics.median(d):.2f} s)"
            )
        for w in self.warnings:
            lines.append(f"  warning        {w}")
        if self.incomplete:
            lines.append(f"  WARNING        {self.incomplete}")
        if self.ok:
            lines.append("  result         OK: the copy gives the protocol" + (", but it is INCOMPLETE (above)" if self.incomplete else ""))
        else:
            lines += [f"  problem        {p}" for p in self.problems]
            lines.append("  result         FAILED: the copy cannot give the protocol as it stands")
        return "\n".join(lines)


def incomplete_warning(
    dataset: str, expected: Expected, per_class: Counter, n_missing: int = 0, found: int | None = None
) -> str | None:
    """For a published dataset (one with expected counts): what a copy lacks though it still gives
    the protocol, and that its results do not compare with published ones; None for a whole copy."""
    lacks = []
    found = sum(per_class.values()) if found is None else found
    if expected.total is not None and found + n_missing < expected.total:
        lacks.append(f"{found} clips where the published dataset has {expected.total}")
    absent = sorted(set(expected.classes or ()) - set(per_class))
    if absent:
        lacks.append(f"no clips of class(es) {', '.join(absent)}")
    if not lacks:
        return None
    return (
        f"INCOMPLETE COPY of {dataset}: {'; '.join(lacks)}. The protocol runs on what is there, but the "
        "results are not comparable with the paper's or any published figures on this dataset"
    )


def per_class(survey: Survey) -> Counter:
    """Clips per class; for a multilabel survey clips per tag (every tag of the vocabulary, none
    left out); for a regression survey, nothing."""
    if survey.kind == "multilabel":
        counts = Counter({t: 0 for t in survey.vocabulary})
        counts.update(t for c in survey.clips for t in c.tags)
        return counts
    if survey.kind == "regression":
        return Counter()
    return Counter(c.label for c in survey.clips)


def survey_incomplete(dataset: Described, survey: Survey) -> str | None:
    """``incomplete_warning`` for what a run is about to use."""
    return incomplete_warning(dataset.name, dataset.expected, per_class(survey), len(survey.missing), len(survey.clips))


def broken_links(root: Path) -> list[str]:
    """Links below ``root`` whose targets are gone, relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_symlink() and not p.exists())


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
