"""Copies of the paper's datasets in their exact on-disk layout and naming, with tiny audio.

Each clip is a short generated signal; files of one format share their bytes (copied from one
encoded template) so that even UrbanSound8K's 8,732 files are written in seconds.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import WRITE_KW

from elm_audio.datasets.ballroom import EXTENDED_CLASSES
from elm_audio.datasets.gtzan import GENRES
from elm_audio.datasets.us8k import CLASSES as US8K_CLASSES
from elm_audio.datasets.us8k import COLUMNS, FOLD_SIZES

US8K_CLASS_SIZES = dict(zip(US8K_CLASSES, (1000, 429, 1000, 1000, 1000, 1000, 374, 1000, 929, 1000)))
BALLROOM_FOLDERS = {
    "ChaChaCha": 111, "Jive": 60, "Quickstep": 82, "Rumba-American": 7, "Rumba-International": 51,
    "Rumba-Misc": 40, "Samba": 86, "Tango": 86, "VienneseWaltz": 65, "Waltz": 110,
}  # fmt: skip


class Writer:
    """Writes ``path`` with the bytes of a template clip of its format."""

    def __init__(self, workdir: Path, seconds: float = 0.05, sr: int = 22_050):
        self.workdir = workdir
        self.seconds, self.sr = seconds, sr
        self.templates: dict[str, Path] = {}

    def __call__(self, path: Path) -> Path:
        ext = path.suffix.lstrip(".").lower()
        if ext not in self.templates:
            t = np.arange(int(self.seconds * self.sr)) / self.sr
            signal = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.templates[ext] = self.workdir / f"template.{ext}"
            sf.write(self.templates[ext], signal, self.sr, **WRITE_KW[ext])
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.templates[ext], path)
        return path


def make_gtzan(root: Path, style: str = "original") -> Path:
    """``genres/<g>/<g>.000NN.au`` (original archive) or ``genres_original/<g>/<g>.000NN.wav``."""
    folder, ext = ("genres", "au") if style == "original" else ("genres_original", "wav")
    write = Writer(root.parent)
    for g in GENRES:
        for i in range(100):
            write(root / folder / g / f"{g}.{i:05d}.{ext}")
    return root


def make_extended_ballroom(root: Path) -> Path:
    write = Writer(root.parent)
    base, rest = divmod(4180, len(EXTENDED_CLASSES))
    for k, cls in enumerate(EXTENDED_CLASSES):
        for i in range(base + (k < rest)):
            write(root / cls / f"{100000 + 1000 * k + i}.mp3")
    return root


def make_ballroom(root: Path) -> Path:
    write = Writer(root.parent)
    for folder, n in BALLROOM_FOLDERS.items():
        for i in range(n):
            write(root / "BallroomData" / folder / f"Media-{folder}-{i + 1:03d}.wav")
    return root


def us8k_rows() -> list[dict]:
    """8,732 rows with the dataset's class and fold sizes and its file naming
    (<fsID>-<classID>-<occurrenceID>-<sliceID>.wav)."""
    classes = [c for c, n in US8K_CLASS_SIZES.items() for _ in range(n)]
    folds = [k for k, n in FOLD_SIZES.items() for _ in range(n)]
    order = np.random.default_rng(0).permutation(len(classes))
    rows = []
    for i, (ci, fold) in enumerate(zip(order, folds)):
        cls = classes[ci]
        class_id = US8K_CLASSES.index(cls)
        fsid = 10_000 + i
        rows.append(
            dict(zip(COLUMNS, (f"{fsid}-{class_id}-0-0.wav", fsid, 0.0, 4.0, 1, fold, class_id, cls)))
        )
    return rows


def make_us8k(root: Path, rows: list[dict] | None = None) -> Path:
    write = Writer(root.parent, sr=44_100)
    rows = us8k_rows() if rows is None else rows
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        write(root / "audio" / f"fold{row['fold']}" / row["slice_file_name"])
    return root
