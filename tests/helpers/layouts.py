"""Copies of the paper's datasets in their exact on-disk layout and naming, with tiny audio.

Each clip is a short generated signal; files of one format share their bytes (copied from one
encoded template) so that even UrbanSound8K's 8,732 files are written in seconds.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from elm_audio.datasets.ballroom import EXTENDED_CLASSES
from elm_audio.datasets.gtzan import GENRES
from elm_audio.datasets.us8k import CLASSES as US8K_CLASSES
from elm_audio.datasets.us8k import COLUMNS, FOLD_SIZES
from helpers.audio import tone, write_audio

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
            signal = tone(440.0, self.seconds, self.sr, amplitude=0.3, noise=0.0)
            self.templates[ext] = write_audio(self.workdir / f"template.{ext}", signal, self.sr)
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


# --- Task kinds beyond one label a clip: HEAR task folders and MagnaTagATune ----------------


def _tone_file(path: Path, sr: int, seconds: float = 0.05, freq: float = 440.0) -> Path:
    return write_audio(path, tone(freq, seconds, sr, amplitude=0.3, noise=0.0), sr)


def make_hear_task(
    root: Path,
    split_mode: str = "new_split_kfold",
    prediction_type: str = "multiclass",
    sample_rates: tuple[int, ...] = (16_000, 48_000),
    numeric: bool = False,
    sample_duration: float | None = 4.0,
    per_split: int = 3,
    embedding_type: str = "scene",
) -> dict[str, dict[str, list]]:
    """A task folder as hearpreprocess's FinalCombine writes it: task_metadata.json (the task
    config with its ``splits``), labelvocabulary.csv (idx,label, written by pandas), one
    ``<split>.json`` (json.dump(..., indent=True)) per split mapping ``<file>.wav`` to a label
    list, and ``<sample rate>/<split>/<file>.wav``. ``numeric``: labels are JSON numbers (the
    vocabulary, read from CSV, holds their strings) and file names are numbers too. Returns
    what each split's JSON holds."""
    import json

    if split_mode == "trainvaltest":
        splits = ["train", "test", "valid"]  # hearpreprocess's SPLITS order
    else:
        splits = [f"fold{i:02d}" for i in range(5)]
    vocabulary = [0, 1, 2, 10] if numeric else ["cat", "dog", "rain", "siren"]
    task = {
        "task_name": "tiny_task",
        "version": "v1.0.0",
        "embedding_type": embedding_type,
        "prediction_type": prediction_type,
        "split_mode": split_mode,
        "sample_duration": sample_duration,
        "evaluation": ["top1_acc"] if prediction_type == "multiclass" else ["mAP", "d_prime"],
        "download_urls": [{"split": "train", "url": "https://example.org/tiny.zip", "md5": "0" * 32}],
        "default_mode": "full",
        "mode": "full",
        "splits": splits,
        "tmp_dir": "_workdir",
    }
    if split_mode != "trainvaltest":
        task["nfolds"] = 5
    root.mkdir(parents=True, exist_ok=True)
    (root / "task_metadata.json").write_text(json.dumps(task, indent=True))
    rows = "".join(f"{i},{label}\n" for i, label in enumerate(sorted(vocabulary, key=str)))
    (root / "labelvocabulary.csv").write_text("idx,label\n" + rows)
    written: dict[str, dict[str, list]] = {}
    n = 0
    for split in splits:
        entries: dict[str, list] = {}
        for i in range(per_split):
            name = f"{1000 + n}.wav" if numeric else f"{split}_clip{i}.wav"
            if prediction_type == "multilabel":
                labels = [vocabulary[(n + j) % len(vocabulary)] for j in range(1 + n % 3)]
            else:
                labels = [vocabulary[n % len(vocabulary)]]
            entries[name] = labels
            seconds = 0.05 if sample_duration is not None else 0.03 + 0.02 * (n % 4)
            for sr in sample_rates:
                _tone_file(root / str(sr) / split / name, sr, seconds, 200.0 + 50 * n)
            n += 1
        (root / f"{split}.json").write_text(json.dumps(entries, indent=True))
        written[split] = entries
    return written


def mtat_tags() -> list[str]:
    """188 tag columns, named as MagnaTagATune's are (lower case, some with spaces)."""
    real = ["guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
            "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
            "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal",
            "pop"]  # fmt: skip
    return real + [f"tag {i:03d}" for i in range(188 - len(real))]


def make_mtat(root: Path, per_folder: int = 2, empty: tuple[str, ...] = (), undecodable: tuple[str, ...] = ()) -> Path:
    """``<root>/annotations_final.csv`` (tab-separated, every field double-quoted: clip_id, 188
    tags, mp3_path) and ``<root>/0`` ... ``<root>/f`` of MP3s. Tag j is on clip i when
    (i + j) % (j % 7 + 2) == 0, so frequencies differ and tie. ``empty`` / ``undecodable``:
    mp3_paths written as 0 bytes / as bytes that are no MP3."""
    write = Writer(root.parent / "mtat_templates")
    tags = mtat_tags()
    lines = ["\t".join(f'"{c}"' for c in ["clip_id", *tags, "mp3_path"])]
    i = 0
    for folder in "0123456789abcdef":
        for k in range(per_folder):
            rel = f"{folder}/artist_{i}-album-{k + 1:02d}-song_title-0-29.mp3"
            values = ["1" if (i + j) % (j % 7 + 2) == 0 else "0" for j in range(len(tags))]
            lines.append("\t".join(f'"{v}"' for v in [str(2 + 3 * i), *values, rel]))
            if rel in empty:
                (root / folder).mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(b"")
            elif rel in undecodable:
                (root / folder).mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(b"ID3" + bytes(range(256)) * 8)
            else:
                write(root / rel)
            i += 1
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    return root


def mtat_paths(per_folder: int = 2) -> list[str]:
    return [f"{f}/artist_{i}-album-{k + 1:02d}-song_title-0-29.mp3" for i, (f, k) in enumerate((f, k) for f in "0123456789abcdef" for k in range(per_folder))]
