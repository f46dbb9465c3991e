"""Task kinds in the index (multiclass, multilabel, regression) and the loaders that give them:
HEAR task folders, MagnaTagATune, CSV tables and the synth variants, each read from a tree
written in its real layout, and every bad input refused in one line that names the file."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.layouts import make_hear_task, make_mtat, mtat_paths, mtat_tags

from elm_audio.config import compose
from elm_audio.datasets import Clip, ClipIndex, DatasetError
from elm_audio.datasets.check import CheckReport
from elm_audio.datasets.synth import SOURCES, Synth
from elm_audio.extraction.extract import ExtractSettings, extract
from elm_audio.frontends.profile import profile
from elm_audio.settings.components import build_dataset, build_frontend


def dataset(name: str, root: Path, *overrides: str):
    return build_dataset(compose([f"dataset={name}", f"dataset.root={root}", *overrides]))


def tree(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def refused(make, *needles: str) -> str:
    """The DatasetError ``make()`` raises: one line naming every needle."""
    with pytest.raises(DatasetError) as err:
        make()
    message = str(err.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# --- the index ---------------------------------------------------------------------------


def clips_of(kind: str) -> list[Clip]:
    if kind == "multilabel":
        tags = [("a",), ("a", "b"), (), ("c",)]
        return [Clip(f"c{i}", f"/x/c{i}.wav", ";".join(t), fold=i % 3 + 1, tags=t) for i, t in enumerate(tags)]
    if kind == "regression":
        return [Clip(f"c{i}", f"/x/c{i}.wav", repr(float(v)), fold=i % 3 + 1, target=v) for i, v in enumerate((1.0, 2.5, -3.0, 2.5))]
    return [Clip(f"c{i}", f"/x/c{i}.wav", lab, fold=i % 3 + 1) for i, lab in enumerate("xyxz")]


def test_the_index_carries_the_kind_and_gives_the_models_y():
    multiclass = ClipIndex("d", clips_of("multiclass"), "folds")
    assert multiclass.kind == "multiclass" and multiclass.vocabulary == ("x", "y", "z") == tuple(multiclass.labels)
    assert multiclass.y().tolist() == ["x", "y", "x", "z"] and multiclass.y().dtype.kind == "U"
    np.testing.assert_array_equal(multiclass.y(), np.array([c.label for c in multiclass.clips]))

    tagged = ClipIndex("d", clips_of("multilabel"), "folds", kind="multilabel", vocabulary=("c", "b", "a"))
    y = tagged.y()
    assert y.dtype == np.uint8 and y.tolist() == [[0, 0, 1], [0, 1, 1], [0, 0, 0], [1, 0, 0]]
    assert tagged.labels == ["c", "b", "a"]
    smaller = tagged.without({"c3"})  # the only clip with c: the vocabulary stays whole
    assert smaller.kind == "multilabel" and smaller.vocabulary == ("c", "b", "a") and smaller.y().shape == (3, 3)
    assert ClipIndex("d", clips_of("multilabel"), "folds", kind="multilabel").vocabulary == ("a", "b", "c")

    numbers = ClipIndex("d", clips_of("regression"), "folds", kind="regression")
    assert numbers.y().dtype == np.float64 and numbers.y().tolist() == [1.0, 2.5, -3.0, 2.5]
    assert numbers.vocabulary == () and numbers.without({"c0"}).kind == "regression"


def test_the_index_refuses_what_does_not_fit_its_kind():
    refused(lambda: ClipIndex("d", clips_of("multilabel"), "folds", kind="multilabel", vocabulary=("a", "b")), "c3", "'c'")
    refused(lambda: ClipIndex("d", clips_of("multilabel")[:1], "folds", kind="multilabel"), "1 tag(s)", "at least two")
    bad = [*clips_of("regression")[:3], Clip("n", "/x/n.wav", "nan", fold=1, target=float("nan"))]
    refused(lambda: ClipIndex("d", bad, "folds", kind="regression"), "clip n", "nan")
    same = [Clip(f"c{i}", f"/x/c{i}.wav", "1.0", fold=1, target=1.0) for i in range(3)]
    refused(lambda: ClipIndex("d", same, "folds", kind="regression"), "1 distinct target")
    refused(lambda: ClipIndex("d", clips_of("multiclass")[:1], "folds"), "found 1 class(es) (x)")
    refused(lambda: ClipIndex("d", clips_of("multiclass"), "folds", kind="ranking"), "ranking")


# --- HEAR task folders -------------------------------------------------------------------


def test_a_kfold_hear_task_gives_its_folds_with_labels_compared_as_strings(tmp_path):
    root = tmp_path / "tiny_task-v1.0.0-full"
    written = make_hear_task(root, "new_split_kfold", "multiclass", numeric=True)
    before = tree(root)
    index = dataset("hear", root).index()
    assert tree(root) == before  # reading writes nothing
    assert index.kind == "multiclass" and index.protocol == "folds" and index.folds == [1, 2, 3, 4, 5]
    assert index.labels == ["0", "1", "10", "2"]  # JSON numbers, read as the vocabulary's strings
    for k, split in enumerate(sorted(written), start=1):
        for name, labels in written[split].items():
            clip = next(c for c in index.clips if c.clip_id == f"{split}/{name[:-4]}")
            assert clip.fold == k and clip.label == str(labels[0]) and clip.clip_id.split("/")[1].isdigit()
            assert clip.path == str(root / "16000" / split / name)  # the lowest rate at or above 12 kHz


def test_a_trainvaltest_multilabel_hear_task_is_partitions_with_the_vocabulary_in_idx_order(tmp_path):
    root = tmp_path / "task"
    written = make_hear_task(root, "trainvaltest", "multilabel", numeric=True, sample_duration=None, sample_rates=(22050,))
    (root / "labelvocabulary.csv").write_text("idx,label\n2,2\n0,0\n3,10\n1,1\n")  # rows in any order: idx decides
    index = dataset("hear", root).index()
    assert index.kind == "multilabel" and index.protocol == "partitions"
    assert index.vocabulary == ("0", "1", "2", "10")
    assert Counter(c.partition for c in index.clips) == {"train": 3, "validation": 3, "test": 3}
    y, rows = index.y(), {c.clip_id: i for i, c in enumerate(index.clips)}
    for split, entries in written.items():
        for name, labels in entries.items():
            row = y[rows[f"{split}/{name[:-4]}"]]
            assert [index.vocabulary[j] for j in np.flatnonzero(row)] == sorted({str(x) for x in labels}, key=index.vocabulary.index)
    assert index.notes["sample_duration"].startswith("null")
    lengths = {sf_frames(c.path) for c in index.clips}
    assert len(lengths) > 1  # clips of varying length, read as they are


def sf_frames(path: str) -> int:
    import soundfile as sf

    return sf.info(path).frames


def test_the_sample_rate_folder_is_chosen(tmp_path):
    root = tmp_path / "task"
    make_hear_task(root, sample_rates=(8000, 16000, 22050, 48000), per_split=1)
    folder = lambda *o: {Path(c.path).parts[-3] for c in dataset("hear", root, *o).index().clips}  # noqa: E731
    assert folder() == {"16000"}
    assert folder("dataset.sample_rate=48000") == {"48000"}
    refused(lambda: dataset("hear", root, "dataset.sample_rate=44100").index(), "dataset.sample_rate=44100", "8000, 16000, 22050, 48000")
    low = tmp_path / "low"
    make_hear_task(low, sample_rates=(8000, 11025), per_split=1)
    assert {Path(c.path).parts[-3] for c in dataset("hear", low).index().clips} == {"11025"}  # none above: the highest


def test_bad_hear_task_folders_are_refused_in_one_line(tmp_path):
    event = tmp_path / "event"
    make_hear_task(event, embedding_type="event", per_split=1)
    refused(lambda: dataset("hear", event).index(), "tiny_task", "not supported yet")

    odd = tmp_path / "odd"
    make_hear_task(odd, per_split=1)
    meta = json.loads((odd / "task_metadata.json").read_text())
    (odd / "task_metadata.json").write_text(json.dumps({**meta, "prediction_type": "ranking"}))
    before = tree(odd)
    refused(lambda: dataset("hear", odd).index(), str(odd / "task_metadata.json"), "prediction_type", "ranking")
    assert tree(odd) == before

    gone = tmp_path / "gone"
    written = make_hear_task(gone, per_split=2)
    name = next(iter(written["fold02"]))
    (gone / "16000" / "fold02" / name).unlink()
    refused(lambda: dataset("hear", gone).index(), str(gone / "fold02.json"), name)

    stray = tmp_path / "stray"
    make_hear_task(stray, per_split=1)
    entries = json.loads((stray / "fold01.json").read_text())
    (stray / "fold01.json").write_text(json.dumps({k: ["thunder"] for k in entries}))
    refused(lambda: dataset("hear", stray).index(), str(stray / "fold01.json"), "thunder", "labelvocabulary.csv")


# --- MagnaTagATune -----------------------------------------------------------------------


def test_mtat_reads_the_distributed_layout_with_the_top_50_tags_and_the_folder_split(tmp_path):
    root = make_mtat(tmp_path / "mtat")
    index = dataset("mtat", root).index()
    assert index.kind == "multilabel" and index.protocol == "partitions"
    table = pd.read_csv(root / "annotations_final.csv", sep="\t")  # an independent reading
    counts = table[mtat_tags()].sum()
    expected = sorted(counts.index, key=lambda t: (-counts[t], t))[:50]
    assert list(index.vocabulary) == expected and len(set(counts[expected])) > 1
    assert {c.clip_id for c in index.clips} == {p[:-4] for p in table["mp3_path"]}
    for clip in index.clips:
        folder = clip.clip_id[0]
        assert clip.partition == ("train" if folder in "0123456789ab" else "validation" if folder == "c" else "test")
        row = table[table["mp3_path"] == clip.clip_id + ".mp3"].iloc[0]
        assert clip.tags == tuple(t for t in expected if row[t] == 1)
    assert Counter(c.partition for c in index.clips) == {"train": 24, "validation": 2, "test": 6}
    assert dataset("mtat", root).on_bad_clip == "skip"


def test_mtat_empty_and_undecodable_mp3s_are_skipped_by_name_never_a_crash(tmp_path):
    empty, broken = mtat_paths()[3], mtat_paths()[30]
    root = make_mtat(tmp_path / "mtat", empty=(empty,), undecodable=(broken,))
    mtat = dataset("mtat", root)
    survey = mtat.survey()
    assert survey.notes["empty_files"] == f"1: {empty}"
    report = CheckReport.from_survey(mtat, survey, read_headers=True)
    assert report.ok and report.bad_clips == sorted([empty[:-4], broken[:-4]])
    index = mtat.to_index(survey)
    clips = [c for c in index.clips if c.clip_id in (empty[:-4], broken[:-4], mtat_paths()[0][:-4])]
    frontend = build_frontend(compose(["frontend=mfcc"]))
    out = np.zeros((len(clips), profile(frontend)["feature_dim"]), dtype=np.float32)
    settings = ExtractSettings(num_workers=0, progress=False, on_bad_clip=mtat.on_bad_clip)
    bad, _ = extract(frontend, clips, out, torch.device("cpu"), settings)
    assert sorted(bad) == sorted([empty[:-4], broken[:-4]])
    assert np.isfinite(out[[c.clip_id == mtat_paths()[0][:-4] for c in clips]]).all()


def test_an_mtat_csv_without_a_column_is_refused_naming_it(tmp_path):
    root = make_mtat(tmp_path / "mtat", per_folder=1)
    csv = root / "annotations_final.csv"
    csv.write_text(csv.read_text().replace('"mp3_path"', '"path"', 1))
    refused(lambda: dataset("mtat", root).index(), str(csv), "mp3_path")


# --- tables ------------------------------------------------------------------------------


def write_table(root: Path, header: str, rows: list[str], audio: bool = True, name: str = "manifest.csv") -> Path:
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    if audio:
        for row in rows:
            path = root / row.split(",")[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                sf.write(path, np.zeros(80, dtype=np.float32), 8000)
    (root / name).write_text("\n".join([header, *rows]) + "\n")
    return root / name


def group_folds(index: ClipIndex) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for c in index.clips:
        out.setdefault(c.group, set()).add(c.fold)
    return out


def test_a_multiclass_table_folds_by_label_never_splitting_a_group(tmp_path):
    rows = [f"audio/s{g}_{k}.wav,{'ab'[g % 2]},speaker{g}" for g in range(10) for k in range(3)]
    write_table(tmp_path / "t", "path,label,group", rows)
    index = dataset("table", tmp_path / "t", "dataset.n_folds=5").index()
    assert index.kind == "multiclass" and index.folds == [1, 2, 3, 4, 5] and len(index.clips) == 30
    assert all(len(folds) == 1 for folds in group_folds(index).values())
    assert {c.clip_id for c in index.clips} == {r.split(",")[0][:-4] for r in rows}
    per_fold = Counter((c.fold, c.label) for c in index.clips)
    assert set(per_fold.values()) == {3}  # one speaker of each class a fold


def test_a_multilabel_table_folds_by_iterative_stratification(tmp_path):
    tags = ["piano", "voice", "drums"]
    rows = []
    for i in range(30):
        present = [t for j, t in enumerate(tags) if (i >> j) & 1]  # with empty cells: no tag
        rows.append(f"clips/c{i:02d}.flac,{';'.join(present)},rec{i // 2}")
    write_table(tmp_path / "t", "path,labels,group", rows)
    index = dataset("table", tmp_path / "t", "dataset.n_folds=3", "dataset.fold_seed=1").index()
    assert index.kind == "multilabel" and index.vocabulary == ("drums", "piano", "voice")  # every tag seen, by name
    assert index.clips[0].tags == () and index.clips[0].label == "" and index.clips[7].tags == ("drums", "piano", "voice")
    assert all(len(folds) == 1 for folds in group_folds(index).values())  # a recording stays in one fold
    y, fold = index.y(), np.array([c.fold for c in index.clips])
    per_fold = np.array([y[fold == k].sum(0) for k in index.folds])
    assert (per_fold > 0).all() and (per_fold.max(0) - per_fold.min(0) <= 3).all()


def test_a_regression_table_folds_by_target_quantiles(tmp_path):
    rows = [f"a/{i}.wav,{v}" for i, v in enumerate(np.linspace(-1.0, 1.0, 40).round(3))]
    write_table(tmp_path / "t", "path,target", rows)
    index = dataset("table", tmp_path / "t", "dataset.n_folds=4").index()
    assert index.kind == "regression" and index.y().dtype == np.float64
    fold, y = np.array([c.fold for c in index.clips]), index.y()
    for k in index.folds:  # every fold spans the range: one value from each of the 10 bins
        assert len(y[fold == k]) == 10 and y[fold == k].min() < -0.8 and y[fold == k].max() > 0.8
    grouped = [f"a/{i}.wav,{v},g{i % 8}" for i, v in enumerate(np.linspace(-1.0, 1.0, 40).round(3))]
    write_table(tmp_path / "t", "path,target,group", grouped, audio=False, name="grouped.csv")
    index = dataset("table", tmp_path / "t", "dataset.manifest=grouped.csv", "dataset.n_folds=4").index()
    assert all(len(folds) == 1 for folds in group_folds(index).values())


def test_a_table_with_its_own_folds_or_splits_keeps_them(tmp_path):
    rows = [f"x/{i}.wav,{'ab'[i % 2]},{i % 3 + 1}" for i in range(12)]
    write_table(tmp_path / "t", "path,label,fold", rows)
    index = dataset("table", tmp_path / "t").index()
    assert [c.fold for c in index.clips] == [i % 3 + 1 for i in range(12)]
    splits = ["train", "validation", "valid", "test"]
    rows = [f"x/{i}.wav,{i * 0.5},{splits[i % 4]}" for i in range(12)]
    write_table(tmp_path / "t", "path,target,split", rows, name="split.csv")
    index = dataset("table", tmp_path / "t", f"dataset.manifest={tmp_path / 't' / 'split.csv'}").index()
    assert index.protocol == "partitions" and Counter(c.partition for c in index.clips) == {"train": 3, "validation": 6, "test": 3}


def test_a_vocabulary_file_orders_the_tags_and_refuses_others(tmp_path):
    rows = [f"x/{i}.wav,{['a;b', 'b', 'c', ''][i % 4]}" for i in range(12)]
    table = write_table(tmp_path / "t", "path,labels", rows)
    (tmp_path / "vocab.txt").write_text("c\nb\na\nd\n")
    index = dataset("table", tmp_path / "t", f"dataset.vocabulary={tmp_path / 'vocab.txt'}", "dataset.n_folds=3").index()
    assert index.vocabulary == ("c", "b", "a", "d") and index.clips[0].tags == ("b", "a") and index.clips[0].label == "b;a"
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    refused(lambda: dataset("table", tmp_path / "t", f"dataset.vocabulary={tmp_path / 'vocab.txt'}").index(), str(table), "line 4", "'c'")


@pytest.mark.parametrize(
    "header, row, needles",
    [
        ("path,target", "x/1.wav,fast", ["line 3", "fast"]),
        ("path,target", "x/1.wav,nan", ["line 3", "nan"]),
        ("path,target", "x/1.wav,", ["line 3", "target"]),
        ("file,label", "x/1.wav,a", ["'path'"]),
        ("path,genre", "x/1.wav,a", ["label", "labels", "target"]),
        ("path,label,target", "x/1.wav,a,1", ["label and target"]),
        ("path,label,fold", "x/1.wav,a,zero", ["line 3", "fold"]),
        ("path,label,split", "x/1.wav,a,dev", ["line 3", "dev"]),
        ("path,label", "x/none.wav,a", ["x/none.wav"]),
    ],
)
def test_bad_tables_are_refused_in_one_line_naming_the_csv(tmp_path, header, row, needles):
    first = {"path,target": "x/0.wav,1", "path,label,split": "x/0.wav,b,train"}.get(header, "x/0.wav,b,1" if header.count(",") == 2 else "x/0.wav,b")
    write_table(tmp_path / "t", "path", ["x/0.wav", "x/1.wav"], name="audio.csv")  # the audio files
    table = write_table(tmp_path / "t", header, [first, row], audio=False)
    before = tree(tmp_path / "t")
    refused(lambda: dataset("table", tmp_path / "t").index(), str(table), *needles)
    assert tree(tmp_path / "t") == before


# --- synth -------------------------------------------------------------------------------


def test_the_multiclass_synth_keeps_its_folder():
    settings = {"clips_per_class": 30, "duration": 6.0, "seed": 0, "version": 1}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    assert Path(Synth("/nowhere").root).name == digest == Path(Synth("/nowhere", kind="multiclass").root).name
    assert len({Path(Synth("/nowhere", kind=k).root).name for k in ("multiclass", "multilabel", "regression")}) == 3


@pytest.mark.parametrize("kind", ["multilabel", "regression"])
def test_the_synth_kinds_generate_and_index(tmp_path, kind):
    overrides = ["dataset.clips_per_class=2", "dataset.duration=0.5", "dataset.n_folds=3", f"dataset.kind={kind}"]
    synth = build_dataset(compose([f"cache.dir={tmp_path}", *overrides]))
    index = synth.index()
    assert index.kind == kind and len(index.clips) == 12 and index.folds == [1, 2, 3] and index.dataset == "synth"
    if kind == "multilabel":
        assert set(index.vocabulary) == set(SOURCES) and index.y().sum(0).min() >= 4
    else:
        assert index.y().min() >= 60 and index.y().max() <= 180 and len(set(index.y())) == 12
    again = build_dataset(compose([f"cache.dir={tmp_path}", *overrides])).index()
    assert [(c.clip_id, c.label, c.fold) for c in again.clips] == [(c.clip_id, c.label, c.fold) for c in index.clips]
    refused(lambda: Synth(str(tmp_path), kind="ranking"), "dataset.kind", "ranking")
