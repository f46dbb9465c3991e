"""A HEAR task folder, exactly as hearpreprocess writes it (``dataset=hear dataset.root=<task>``).

(Not ``elm_audio.hear``, which exports our front-ends as a HEAR module.)

The layout (hearpreprocess ``pipeline.py``, read by heareval ``task_predictions.py``)::

    <task>/task_metadata.json      task_name, embedding_type (scene|event), prediction_type
                                   (multiclass|multilabel), split_mode (trainvaltest |
                                   new_split_kfold | presplit_kfold), nfolds, sample_duration
                                   (null: clips of varying length), splits (the split names)...
    <task>/labelvocabulary.csv     idx,label
    <task>/<split>.json            {"<file>.wav": [label, ...], ...} for every split
    <task>/<sample rate>/<split>/<file>.wav

The task's own splits are the protocol: ``train``/``valid``/``test`` are the partitions
train/validation/test; ``fold00``..``fold<k-1>`` (in name order) are the folds 1..k, so the
honest protocol's test fold k with validation fold k+1 is heareval's own rotation. Labels are
compared as strings (a JSON number 3 is the vocabulary's "3", as heareval does with ``str``);
file names stay names. Clip ids are ``<split>/<file name without .wav>``, the same at every
sample rate. Of several sample-rate folders, ``dataset.sample_rate`` chooses one; by default the
lowest at or above the front-ends' 12 kHz (less resampling, nothing lost), else the highest.

Event (timestamp) tasks are not supported yet. A multilabel task's vocabulary is
labelvocabulary.csv in idx order; a multiclass task's classes are its labels (sorted, as for
every multiclass dataset).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..config import shown
from ..sound.decode import SAMPLE_RATE
from .base import Dataset, hidden, require_root
from .index import Clip, DatasetError, Survey, label_for_tags

METADATA = "task_metadata.json"
VOCABULARY = "labelvocabulary.csv"
PREDICTION_TYPES = ("multiclass", "multilabel")
EMBEDDING_TYPES = ("scene", "event")
SPLIT_MODES = ("trainvaltest", "new_split_kfold", "presplit_kfold")
PARTITION_OF = {"train": "train", "valid": "validation", "test": "test"}
LAYOUT = (
    "point dataset.root at a task folder as hearpreprocess writes it: task_metadata.json, "
    "labelvocabulary.csv, <split>.json and <sample rate>/<split>/*.wav"
)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} not found; {LAYOUT}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path} is not valid JSON ({err})") from None


def read_vocabulary(path: Path) -> tuple[str, ...]:
    """labelvocabulary.csv's labels, as strings, in idx order."""
    if not path.is_file():
        raise DatasetError(f"{path} not found; {LAYOUT}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in ("idx", "label") if c not in (reader.fieldnames or [])]
        if absent:
            raise DatasetError(f"{path} lacks the column(s) {', '.join(absent)} (expected idx,label)")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append((int(row["idx"]), str(row["label"])))
            except (TypeError, ValueError):
                raise DatasetError(f"{path} line {line}: idx {shown(row['idx'])} is not a whole number") from None
    labels = tuple(label for _, label in sorted(rows))
    if len(set(labels)) != len(labels):
        raise DatasetError(f"{path} names a label more than once")
    return labels


class HEARTask(Dataset):
    hint = LAYOUT
    own_protocol = True

    def __init__(
        self,
        root: str | None,
        name: str = "hear",
        sample_rate: int | None = None,
        on_bad_clip: str = "error",
        group: str | None = None,
    ):
        super().__init__(name, root, on_bad_clip, group)
        self.sample_rate = None if sample_rate in (None, "", "???") else sample_rate

    def metadata(self, root: Path) -> dict:
        path = root / METADATA
        meta = _load_json(path)
        if not isinstance(meta, dict):
            raise DatasetError(f"{path} is not a JSON object; {LAYOUT}")
        task = meta.get("task_name", root.name)
        for key, allowed in (("embedding_type", EMBEDDING_TYPES), ("prediction_type", PREDICTION_TYPES), ("split_mode", SPLIT_MODES)):
            if key not in meta:
                raise DatasetError(f"{path} lacks the key {key}; {LAYOUT}")
            if key == "embedding_type" and meta[key] == "event":
                raise DatasetError(
                    f"HEAR task {task}: event (timestamp) tasks (embedding_type: event in {path}) are not supported yet; "
                    "use a scene task"
                )
            if meta[key] not in allowed:
                raise DatasetError(f"{path}: {key} {shown(meta[key])} is not one of {', '.join(allowed)}")
        return meta

    def splits(self, meta: dict, path: Path) -> list[str]:
        """The task's split names: its ``splits`` list, or what split_mode and nfolds give."""
        splits = meta.get("splits")
        if splits is None:
            if meta["split_mode"] == "trainvaltest":
                splits = list(PARTITION_OF)
            else:
                nfolds = meta.get("nfolds")
                if not isinstance(nfolds, int) or isinstance(nfolds, bool) or nfolds < 2:
                    raise DatasetError(f"{path}: nfolds {shown(nfolds)} is not a whole number of folds (and no splits list)")
                splits = [f"fold{i:02d}" for i in range(nfolds)]
        if not isinstance(splits, list) or not splits or not all(isinstance(s, str) for s in splits):
            raise DatasetError(f"{path}: splits {shown(splits)} is not a list of split names")
        if meta["split_mode"] == "trainvaltest":
            if sorted(splits) != sorted(PARTITION_OF):
                raise DatasetError(f"{path}: split_mode trainvaltest needs the splits train, valid, test; it lists {', '.join(splits)}")
        elif len(splits) < 2 or len(set(splits)) != len(splits):
            raise DatasetError(f"{path}: splits {', '.join(splits)} are not two or more distinct folds")
        return splits

    def audio_folder(self, root: Path) -> tuple[int, list[int]]:
        """The sample-rate folder to read, and all there are."""
        rates = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
        if not rates:
            raise DatasetError(f"{root} has no sample-rate folder (e.g. {root}/48000/<split>/); {LAYOUT}")
        if self.sample_rate is not None:
            try:
                wanted = int(self.sample_rate)
            except (TypeError, ValueError):
                wanted = None
            if wanted not in rates:
                raise DatasetError(
                    f"dataset.sample_rate={shown(self.sample_rate)}: {root} holds the sample rate(s) {', '.join(map(str, rates))}"
                )
            return wanted, rates
        above = [r for r in rates if r >= SAMPLE_RATE]
        return (min(above) if above else max(rates)), rates

    def survey(self, mode: str = "honest") -> Survey:
        root = require_root(self.root, self.name, LAYOUT)
        meta = self.metadata(root)
        meta_path = root / METADATA
        task = str(meta.get("task_name", root.name))
        kind = meta["prediction_type"]
        splits = self.splits(meta, meta_path)
        vocabulary = read_vocabulary(root / VOCABULARY)
        known = set(vocabulary)
        rate, rates = self.audio_folder(root)
        kfold = meta["split_mode"] != "trainvaltest"
        fold_of = {s: k for k, s in enumerate(sorted(splits), start=1)}

        clips: list[Clip] = []
        listed: set[str] = set()
        for split in splits:
            split_json = root / f"{split}.json"
            entries = _load_json(split_json)
            if not isinstance(entries, dict):
                raise DatasetError(f"{split_json} is not a JSON object mapping file names to label lists")
            folder = root / str(rate) / split
            absent = [name for name in entries if not (folder / name).is_file()]
            if absent:
                raise DatasetError(
                    f"{split_json} names {absent[0]}, not found in {folder} ({len(absent)} of {len(entries)} listed "
                    "files missing); restore the task folder or choose another dataset.sample_rate"
                )
            for name, labels in entries.items():
                if isinstance(labels, (str, int, float)) and not isinstance(labels, bool):
                    labels = [labels]
                if not isinstance(labels, list):
                    raise DatasetError(f"{split_json}: {name} maps to {shown(labels)}, not a list of labels")
                strings = []
                for label in labels:
                    text = str(label)
                    if text not in known:
                        raise DatasetError(
                            f"{split_json}: {name} has label {text!r}, which {VOCABULARY} lacks; "
                            "the task folder is inconsistent: regenerate it or correct the label"
                        )
                    if text not in strings:
                        strings.append(text)
                if kind == "multiclass" and len(strings) != 1:
                    raise DatasetError(
                        f"{split_json}: {name} has {len(strings)} labels in a multiclass task (prediction_type in {METADATA}); "
                        "a multiclass clip has exactly one"
                    )
                rel = f"{rate}/{split}/{name}"
                listed.add(rel)
                cid = f"{split}/{name[:-4] if name.lower().endswith('.wav') else name}"
                split_fields = {"fold": fold_of[split]} if kfold else {"partition": PARTITION_OF[split]}
                if kind == "multiclass":
                    clips.append(Clip(cid, str(folder / name), strings[0], **split_fields))
                else:
                    tags = tuple(t for t in vocabulary if t in strings)
                    clips.append(Clip(cid, str(folder / name), label_for_tags(tags), tags=tags, **split_fields))
        clips = self.with_groups(clips, root) if self.pattern else clips
        on_disk = {
            p.relative_to(root).as_posix()
            for p in (root / str(rate)).rglob("*")
            if p.is_file() and not hidden(p)
        }
        notes = {
            "task_name": task,
            "split_mode": str(meta["split_mode"]),
            "sample_rate": str(rate),
            "sample_duration": "null (clips of varying length)" if meta.get("sample_duration") is None else str(meta["sample_duration"]),
        }
        if len(rates) > 1:
            notes["sample_rates"] = ", ".join(map(str, rates))
        protocol = "folds" if kfold else "partitions"
        return Survey(
            clips,
            protocol,
            root,
            extra=sorted(on_disk - listed),
            notes=notes,
            kind=kind,
            vocabulary=vocabulary if kind == "multilabel" else (),
        )
