"""The Ballroom collections: Extended Ballroom (13 rhythm classes, MP3) and the original
Ballroom (``BallroomData/<Class>/*.wav``, 8 classes once its three Rumba folders are merged).

Protocol: 10 stratified folds, shuffled with ``fold_seed``; under ``protocol.mode=paper`` the
original code's unshuffled folds (scikit-learn's cv=10 on the clips in path order).
"""

from __future__ import annotations

from pathlib import Path

from .base import Dataset, audio_files, require_root, subfolders
from .folder import stratified_folds
from .index import Clip, DatasetError, Expected, Survey

EXTENDED_CLASSES = (
    "Chacha", "Foxtrot", "Jive", "Pasodoble", "Quickstep", "Rumba", "Salsa",
    "Samba", "Slowwaltz", "Tango", "Viennesewaltz", "Waltz", "Wcswing",
)  # fmt: skip
# folder -> class of the original Ballroom collection
BALLROOM_FOLDERS = {
    "ChaChaCha": "ChaChaCha",
    "Jive": "Jive",
    "Quickstep": "Quickstep",
    "Rumba-American": "Rumba",
    "Rumba-International": "Rumba",
    "Rumba-Misc": "Rumba",
    "Samba": "Samba",
    "Tango": "Tango",
    "VienneseWaltz": "VienneseWaltz",
    "Waltz": "Waltz",
}


class _ClassFolders(Dataset):
    """Shared by both collections: known class folders of audio files, 10 stratified folds."""

    folders: dict[str, str]  # folder name -> class
    container: str | None = None  # the archive's top folder, which root may also point above
    extension: str = ".mp3"

    def __init__(self, root, name, n_folds: int = 10, fold_seed: int = 0, on_bad_clip: str = "error", group: str | None = None):
        super().__init__(name, root, on_bad_clip, group)
        self.n_folds = int(n_folds)
        self.fold_seed = int(fold_seed)

    def class_root(self) -> Path:
        root = require_root(self.root, self.name, self.hint)
        candidates = [root] + ([root / self.container] if self.container else [])
        for candidate in candidates:
            if candidate.is_dir() and any((candidate / f).is_dir() for f in self.folders):
                return candidate
        raise DatasetError(f"dataset.root={root} holds none of the {self.name} class folders: {self.hint}")

    def survey(self, mode: str = "honest") -> Survey:
        root = self.class_root()
        found: list[tuple[str, str, Path]] = []
        extra: list[str] = []
        missing = [f"{f}/" for f in self.folders if not (root / f).is_dir()]
        for folder in subfolders(root):
            if folder.name not in self.folders:
                extra.append(f"{folder.name}/ (not a {self.name} class folder)")
                continue
            for f in audio_files(folder):
                if f.suffix.lower() != self.extension:
                    extra.append(f"{f.relative_to(root).as_posix()} (expected {self.extension} files)")
                    continue
                found.append((f.relative_to(root).with_suffix("").as_posix(), self.folders[folder.name], f))
        found.sort()
        seed = None if mode == "paper" else self.fold_seed
        groups = self.groups_for([path.relative_to(root).as_posix() for _, _, path in found])
        folds = stratified_folds([label for _, label, _ in found], self.n_folds, seed, groups) if found else []
        clips = [
            Clip(cid, str(path), label, fold=k, group=None if groups is None else groups[i])
            for i, ((cid, label, path), k) in enumerate(zip(found, folds))
        ]
        notes = {"fold_seed": "unshuffled" if seed is None else str(seed)}
        return Survey(clips, "folds", root, missing=missing, extra=extra, notes=notes)


class ExtendedBallroom(_ClassFolders):
    folders = {c: c for c in EXTENDED_CLASSES}
    expected = Expected(total=4180, classes=EXTENDED_CLASSES)
    hint = "expected <root>/<Class>/<clip>.mp3 for the 13 classes " + ", ".join(EXTENDED_CLASSES)

    def __init__(self, root: str | None, name: str = "extended_ballroom", **kwargs):
        super().__init__(root, name, **kwargs)


class Ballroom(_ClassFolders):
    folders = BALLROOM_FOLDERS
    container = "BallroomData"
    extension = ".wav"
    expected = Expected(total=698, classes=tuple(sorted(set(BALLROOM_FOLDERS.values()))))
    hint = "expected BallroomData/<Class>/*.wav with folders " + ", ".join(BALLROOM_FOLDERS)

    def __init__(self, root: str | None, name: str = "ballroom", **kwargs):
        super().__init__(root, name, **kwargs)
