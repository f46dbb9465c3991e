"""GTZAN genre collection, as distributed: ``genres/<genre>/<genre>.000NN.au`` in the original
archive, ``genres_original/<genre>/<genre>.000NN.wav`` in the common mirror.

Protocol: the fault-filtered partitions of Kereliuk, Sturm and Larsen (shipped in
``elm_audio/data/gtzan_fault_filtered``, see SOURCE.md there), or ``split=full``: stratified
10-fold over all 1,000 clips.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ..config import shown
from .base import Dataset, audio_files, require_root, subfolders
from .folder import assign_partitions, stratified_folds
from .index import Clip, DatasetError, Expected, Survey

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
SPLIT_FILES = {"train": "train_filtered.txt", "validation": "valid_filtered.txt", "test": "test_filtered.txt"}
NAME = re.compile(r"^(?P<genre>[a-z]+)\.(?P<num>\d{5})$")
LAYOUT = (
    "expected <root>/<genre>/<genre>.000NN.au|.wav for the 10 genres, with root the folder that holds "
    "the genre folders or the one above it (holding genres/ or genres_original/)"
)


def split_lists() -> dict[str, list[str]]:
    folder = resources.files("elm_audio") / "resources" / "gtzan_fault_filtered"
    return {p: (folder / f).read_text().split() for p, f in SPLIT_FILES.items()}


class GTZAN(Dataset):
    hint = LAYOUT

    def __init__(
        self,
        root: str | None,
        name: str = "gtzan",
        split: str = "filtered",
        n_folds: int = 10,
        fold_seed: int = 0,
        on_bad_clip: str = "error",
        group: str | None = None,
    ):
        super().__init__(name, root, on_bad_clip, group)
        if split not in ("filtered", "full"):
            raise DatasetError(f"dataset.split={shown(split)} must be filtered (the paper's) or full (10 folds)")
        self.split = split
        self.n_folds = int(n_folds)
        self.fold_seed = int(fold_seed)
        if split == "filtered":
            lists = split_lists()
            self.expected = Expected(
                total=sum(map(len, lists.values())), classes=GENRES, per_group={p: len(v) for p, v in lists.items()}
            )
        else:
            self.expected = Expected(total=1000, classes=GENRES, per_class={g: 100 for g in GENRES})

    def genre_root(self) -> Path:
        root = require_root(self.root, self.name, LAYOUT)
        for candidate in (root, root / "genres", root / "genres_original", root / "Data" / "genres_original"):
            if candidate.is_dir() and any((candidate / g).is_dir() for g in GENRES):
                return candidate
        raise DatasetError(f"dataset.root={root} holds no GTZAN genre folders: {LAYOUT}")

    def survey(self, mode: str = "honest") -> Survey:
        root = self.genre_root()
        found: dict[str, tuple[str, Path]] = {}
        extra: list[str] = []
        for folder in subfolders(root):
            if folder.name not in GENRES:
                extra.append(f"{folder.name}/ (not a GTZAN genre)")
                continue
            for f in audio_files(folder):
                m = NAME.match(f.stem)
                if m and m["genre"] == folder.name and int(m["num"]) < 100:
                    found[f"{folder.name}/{f.stem}"] = (folder.name, f)
                else:
                    extra.append(f.relative_to(root).as_posix())
        if self.split == "filtered":
            clips, missing = assign_partitions(found, split_lists(), "the GTZAN fault-filtered list")
            return Survey(self.with_groups(clips, root), "partitions", root, missing=missing, extra=extra)
        wanted = [f"{g}/{g}.{i:05d}" for g in GENRES for i in range(100)]
        missing = [f"{cid}.au|.wav" for cid in wanted if cid not in found]
        present = [cid for cid in wanted if cid in found]
        groups = self.groups_for([found[c][1].relative_to(root).as_posix() for c in present])
        folds = stratified_folds([found[c][0] for c in present], self.n_folds, self.fold_seed, groups) if present else []
        clips = [
            Clip(cid, str(found[cid][1]), found[cid][0], fold=k, group=None if groups is None else groups[i])
            for i, (cid, k) in enumerate(zip(present, folds))
        ]
        return Survey(clips, "folds", root, missing=missing, extra=extra, notes={"fold_seed": str(self.fold_seed)})
