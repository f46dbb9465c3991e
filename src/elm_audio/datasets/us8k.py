"""UrbanSound8K: ``metadata/UrbanSound8K.csv`` and ``audio/fold1`` ... ``audio/fold10``.

Classes and folds come from the CSV (never from file names); the protocol is the dataset's own
10 folds. Clips (at most 4 s) are repeat-padded to the front-end's input, as the paper does.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..config import shown
from .base import Dataset, hidden, require_root
from .index import AUDIO_EXTENSIONS, Clip, DatasetError, Expected, Survey

CLASSES = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)  # fmt: skip
FOLD_SIZES = {1: 873, 2: 888, 3: 925, 4: 990, 5: 936, 6: 823, 7: 838, 8: 806, 9: 816, 10: 837}
COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
LAYOUT = "expected <root>/metadata/UrbanSound8K.csv and <root>/audio/fold1 ... fold10"


class UrbanSound8K(Dataset):
    expected = Expected(total=8732, classes=CLASSES, per_group={f"fold{k}": n for k, n in FOLD_SIZES.items()})
    hint = LAYOUT

    def __init__(self, root: str | None, name: str = "us8k", on_bad_clip: str = "error", group: str | None = "fsID"):
        """``group``: a column of the CSV (fsID, the Freesound recording a slice comes from,
        which the official folds keep together), or a pattern over the clip's path."""
        self.column = group if group in COLUMNS else None
        super().__init__(name, root, on_bad_clip, None if self.column else group)

    def rows(self, root: Path) -> list[dict[str, str]]:
        meta = root / "metadata" / "UrbanSound8K.csv"
        if not meta.is_file():
            raise DatasetError(f"{meta} not found: {LAYOUT}")
        with meta.open(newline="") as fh:
            reader = csv.DictReader(fh)
            absent = [c for c in ("slice_file_name", "fold", "class") if c not in (reader.fieldnames or [])]
            if absent:
                raise DatasetError(f"{meta} lacks the column(s) {', '.join(absent)} (expected {', '.join(COLUMNS)})")
            return list(reader)

    def survey(self, mode: str = "honest") -> Survey:
        root = require_root(self.root, self.name, LAYOUT)
        clips, missing, listed = [], [], set()
        for line, row in enumerate(self.rows(root), start=2):
            try:
                fold = int(row["fold"])
            except ValueError:
                raise DatasetError(
                    f"{root}/metadata/UrbanSound8K.csv line {line}: fold {shown(row['fold'])} is not a number"
                ) from None
            rel = f"audio/fold{fold}/{row['slice_file_name']}"
            listed.add(rel)
            if (root / rel).is_file():
                group = row[self.column] if self.column else (self.group_of(rel) if self.pattern else None)
                clips.append(Clip(rel.rsplit(".", 1)[0], str(root / rel), row["class"], fold=fold, group=group))
            else:
                missing.append(rel)
        audio = root / "audio"
        on_disk = (
            {p.relative_to(root).as_posix() for p in audio.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and not hidden(p)}
            if audio.is_dir()
            else set()
        )
        extra = sorted(on_disk - listed)
        return Survey(clips, "folds", root, missing=missing, extra=extra)
