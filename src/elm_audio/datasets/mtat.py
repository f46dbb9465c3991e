"""MagnaTagATune as distributed: ``<root>/0`` ... ``<root>/f`` of MP3s and
``<root>/annotations_final.csv``.

The CSV is tab-separated with every field in double quotes: ``clip_id``, the 188 tag columns
(0/1) and ``mp3_path`` (``f/artist-album-nn-title-30-59.mp3``). Multi-label tagging on the
``top_tags`` (50) most frequent tags, counted over every row of the CSV, ties broken by tag name;
the vocabulary (the columns of y) is in that order: most frequent first. Clips with none of those
tags stay in (negatives for every tag), as in Dieleman and Schrauwen (2014).

The split the tagging literature uses: folders ``0``-``b`` train, ``c`` validation, ``d``-``f``
test. Clip ids are ``mp3_path`` without its extension.

The distributed set holds a handful of empty or undecodable MP3s. They stay in the index; the
survey counts the empty ones (notes), and extraction leaves every clip that does not decode
out by name (``dataset.on_bad_clip=skip``, this dataset's default: the run lists them in
``bad_clips.tsv`` and its summary counts them). ``on_bad_clip=error`` stops at the first instead.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from ..config import shown
from .base import Dataset, hidden, require_root
from .index import (
    AUDIO_EXTENSIONS,
    Clip,
    DatasetError,
    Expected,
    Survey,
    label_for_tags,
)

CSV_NAME = "annotations_final.csv"
ID_COLUMNS = ("clip_id", "mp3_path")
FOLDERS = tuple("0123456789abcdef")
PARTITION_OF = {**{f: "train" for f in "0123456789ab"}, "c": "validation", **{f: "test" for f in "def"}}
TOTAL = 25_863
LAYOUT = f"expected <root>/{CSV_NAME} and the MP3 folders <root>/0 ... <root>/f"


def top_tags(counts: Counter, columns: list[str], n: int) -> tuple[str, ...]:
    """The ``n`` most frequent tags, most frequent first, ties by name."""
    return tuple(sorted(columns, key=lambda t: (-counts[t], t))[:n])


class MagnaTagATune(Dataset):
    expected = Expected(total=TOTAL)
    hint = LAYOUT
    own_protocol = True

    def __init__(
        self,
        root: str | None,
        name: str = "mtat",
        top_tags: int = 50,
        on_bad_clip: str = "skip",
        group: str | None = None,
    ):
        super().__init__(name, root, on_bad_clip, group)
        if isinstance(top_tags, bool) or not isinstance(top_tags, int) or top_tags < 2:
            raise DatasetError(f"dataset.top_tags={shown(top_tags)} must be a whole number, at least 2")
        self.top_tags = top_tags

    def rows(self, root: Path) -> tuple[Path, list[str], list[tuple[int, dict[str, str]]]]:
        table = root / CSV_NAME
        if not table.is_file():
            raise DatasetError(f"{table} not found: {LAYOUT}")
        with table.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter="\t", quotechar='"')
            header = next(reader, None) or []
            for column in ID_COLUMNS:
                if column not in header:
                    raise DatasetError(
                        f"{table} lacks the column {column} (expected tab-separated, quoted: clip_id, the tag columns, mp3_path)"
                    )
            rows = []
            for line, fields in enumerate(reader, start=2):
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise DatasetError(f"{table} line {line}: {len(fields)} fields where the header has {len(header)}")
                rows.append((line, dict(zip(header, fields))))
        tags = [c for c in header if c not in ID_COLUMNS]
        return table, tags, rows

    def survey(self, mode: str = "honest") -> Survey:
        root = require_root(self.root, self.name, LAYOUT)
        table, columns, rows = self.rows(root)
        counts: Counter = Counter()
        for line, row in rows:
            for t in columns:
                value = row[t].strip()
                if value not in ("0", "1"):
                    raise DatasetError(f"{table} line {line}: tag {t} is {shown(value)}, not 0 or 1")
                counts[t] += value == "1"
        vocabulary = top_tags(counts, columns, self.top_tags)
        if len(vocabulary) < 2:
            raise DatasetError(f"{table} has {len(columns)} tag column(s); tagging needs at least two")

        clips, missing, listed, empty = [], [], set(), []
        for line, row in rows:
            rel = row["mp3_path"].strip()
            folder = rel.split("/", 1)[0]
            if folder not in PARTITION_OF or "/" not in rel:
                raise DatasetError(f"{table} line {line}: mp3_path {shown(rel)} is not in one of the folders 0 ... f")
            listed.add(rel)
            path = root / rel
            if not path.is_file():
                missing.append(rel)
                continue
            if path.stat().st_size == 0:
                empty.append(rel)
            tags = tuple(t for t in vocabulary if row[t].strip() == "1")
            cid = rel.rsplit(".", 1)[0]
            group = self.group_of(rel) if self.pattern else None
            clips.append(Clip(cid, str(path), label_for_tags(tags), partition=PARTITION_OF[folder], group=group, tags=tags))
        on_disk = {
            p.relative_to(root).as_posix()
            for f in FOLDERS
            if (root / f).is_dir()
            for p in (root / f).iterdir()
            if p.is_file() and not hidden(p) and p.suffix.lower() in AUDIO_EXTENSIONS
        }
        notes = {"top_tags": str(len(vocabulary))}
        if empty:
            notes["empty_files"] = f"{len(empty)}: {', '.join(sorted(empty))}"
        return Survey(
            clips,
            "partitions",
            root,
            missing=missing,
            extra=sorted(on_disk - listed),
            notes=notes,
            kind="multilabel",
            vocabulary=vocabulary,
        )
