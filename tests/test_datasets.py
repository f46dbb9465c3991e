from collections import Counter

import pytest

from elm_audio.config import compose
from elm_audio.datasets import DatasetError
from elm_audio.datasets.folder import Folder
from elm_audio.datasets.synth import RHYTHMS, TIMBRES, Synth
from elm_audio.settings.components import build_dataset


def test_folder_reads_one_class_per_sub_folder_with_stratified_folds(class_folder):
    index = Folder(str(class_folder), n_folds=3, fold_seed=0).index()
    assert index.labels == ["high", "low"] and len(index.clips) == 24
    assert {c.clip_id for c in index.clips} == {f"{lab}/{lab}_{i}" for lab in ("low", "high") for i in range(12)}
    assert all(c.label == c.clip_id.split("/")[0] for c in index.clips)
    per_fold = Counter((c.fold, c.label) for c in index.clips)
    assert set(per_fold.values()) == {4}  # each fold holds four clips of each class


def test_fold_seed_changes_the_folds_and_is_reproducible(class_folder):
    folds = lambda seed: [c.fold for c in Folder(str(class_folder), n_folds=3, fold_seed=seed).index().clips]  # noqa: E731
    assert folds(0) == folds(0) and folds(0) != folds(1)


def test_folder_split_lists(class_folder, tmp_path):
    lists = {}
    for part, i in (("train", (0, 1, 2)), ("validation", (3,)), ("test", (4, 5))):
        lists[part] = tmp_path / f"{part}.txt"
        lists[part].write_text("".join(f"{lab}/{lab}_{k}.wav\n" for lab in ("low", "high") for k in i))
    index = Folder(str(class_folder), split_lists={k: str(v) for k, v in lists.items()}).index()
    assert index.protocol == "partitions"
    assert Counter(c.partition for c in index.clips) == {"train": 6, "validation": 2, "test": 4}  # as listed
    # listed as .wav, matched whatever the extension on disk
    assert {c.path.rsplit(".", 1)[1] for c in index.clips} == {"wav", "flac", "ogg", "mp3", "au"}


def test_a_list_naming_a_missing_clip_says_which(class_folder, tmp_path):
    names = {p: tmp_path / f"{p}.txt" for p in ("train", "validation", "test")}
    names["train"].write_text("low/low_1.wav\nhigh/high_1.wav\n")
    names["validation"].write_text("low/low_2.wav\nhigh/high_2.wav\n")
    names["test"].write_text("low/low_0.wav\nhigh/high_99.wav\n")
    lists = {k: str(v) for k, v in names.items()}
    with pytest.raises(DatasetError, match=r"lacks 1 file\(s\)(.|\n)*missing \(1\):\n    high/high_99.wav"):
        Folder(str(class_folder), split_lists=lists).index()
    names["test"].write_text("low/low_0.wav\nhigh/high_1.wav\n")
    with pytest.raises(DatasetError, match=r"split_lists.test names high/high_1.wav, already listed in train"):
        Folder(str(class_folder), split_lists=lists).index()


def test_fewer_than_two_classes_is_refused(class_folder):
    import shutil

    shutil.rmtree(class_folder / "high")
    with pytest.raises(DatasetError, match="at least two"):
        Folder(str(class_folder), n_folds=3).index()


@pytest.mark.parametrize("root", [None, "???", "/no/such/folder"])
def test_missing_root_names_the_key(root):
    with pytest.raises(DatasetError, match="dataset.root"):
        Folder(root).index()


def test_too_few_clips_for_the_folds_says_what_to_change(class_folder):
    with pytest.raises(DatasetError, match="dataset.n_folds=20"):
        Folder(str(class_folder), n_folds=20).index()


def test_synth_generates_its_classes_once_and_reads_them_as_a_folder(tmp_path):
    data = Synth(str(tmp_path), clips_per_class=4, duration=1.0, n_folds=2)
    index = data.index()
    assert index.labels == sorted(f"{r}_{t}" for r in RHYTHMS for t in TIMBRES)
    assert len(index.clips) == 4 * 6 and index.protocol == "folds"
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}
    again = Synth(str(tmp_path), clips_per_class=4, duration=1.0, n_folds=2).index()
    assert [c.path for c in again.clips] == [c.path for c in index.clips]
    assert stamp == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}  # not rewritten
    assert not list(tmp_path.glob(".tmp-*"))


def test_synth_classes_differ_in_rhythm_and_in_timbre(tmp_path):
    """Onset spacing follows the rhythm; spectral centroid follows the timbre."""
    import numpy as np

    from elm_audio.datasets.synth import synth_clip

    sr = 22_050

    def centroid(timbre: str, seed: int) -> float:  # energy-weighted, over the whole clip
        power = np.abs(np.fft.rfft(synth_clip("straight", timbre, seed, 4.0))) ** 2
        return float((np.fft.rfftfreq(4 * sr, 1 / sr) * power).sum() / power.sum())

    assert min(centroid("noise", s) for s in range(3)) > 1.5 * max(centroid("tone", s) for s in range(3))

    def beat_periodicity(rhythm: str, seed: int) -> float:
        """Autocorrelation of the onset envelope at one beat (0.3 to 0.8 s): high where every
        gap is one beat, low for syncopation."""
        y = synth_clip(rhythm, "tone", seed, 12.0)
        hop = sr // 100
        envelope = np.sqrt(np.convolve(y**2, np.ones(hop) / hop, "same")[::hop])
        onsets = np.maximum(np.diff(envelope), 0)
        onsets -= onsets.mean()
        ac = np.correlate(onsets, onsets, "full")[len(onsets) - 1 :]
        return float(ac[30:80].max() / ac[0])

    assert min(beat_periodicity("straight", s) for s in range(5)) > max(beat_periodicity("syncopated", s) for s in range(5))
    assert min(beat_periodicity("waltz", s) for s in range(5)) > max(beat_periodicity("syncopated", s) for s in range(5))


def test_dataset_configs_build_their_datasets(class_folder):
    data = build_dataset(compose(["dataset=folder", f"dataset.root={class_folder}", "dataset.n_folds=3"]))
    assert isinstance(data, Folder) and len(data.index().clips) == 24
    with pytest.raises(DatasetError, match="on_bad_clip"):
        build_dataset(compose(["dataset=folder", f"dataset.root={class_folder}", "dataset.on_bad_clip=ignore"]))


def test_one_clip_stored_in_two_formats_is_named(class_folder):
    (class_folder / "low" / "low_0.flac").write_bytes((class_folder / "low" / "low_0.wav").read_bytes())
    with pytest.raises(DatasetError, match=r"low_0.wav and .*low_0.flac|low_0.flac and .*low_0.wav"):
        Folder(str(class_folder), n_folds=3).index()


def test_split_lists_need_all_three_partitions_and_existing_files(class_folder, tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("low/low_1.wav\n")
    with pytest.raises(DatasetError, match="dataset.split_lists needs train, validation, test; missing test, validation"):
        Folder(str(class_folder), split_lists={"train": str(train)}).index()
    lists = {"train": str(train), "validation": str(train), "test": str(tmp_path / "absent.txt")}
    with pytest.raises(DatasetError, match=r"dataset.split_lists.validation|dataset.split_lists.test=.*absent.txt: no such list file"):
        Folder(str(class_folder), split_lists=lists).index()


def test_a_root_with_class_folders_but_no_audio_says_what_it_expected(tmp_path):
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    (tmp_path / "high" / "notes.txt").write_text("not audio")
    with pytest.raises(DatasetError, match=r"holds no audio files in class sub-folders \(expected <root>/<class>/<clip>"):
        Folder(str(tmp_path)).index()


def test_gtzan_refuses_an_unknown_split_by_key():
    from elm_audio.datasets.gtzan import GTZAN

    with pytest.raises(DatasetError, match="dataset.split=random must be filtered"):
        GTZAN("/tmp", split="random")


def test_a_grouped_folder_never_puts_excerpts_of_one_track_on_both_sides_of_a_split(tmp_path):
    """<class>/<track>_<n>.wav, several excerpts a track: with dataset.group='(.*)_\\d+\\.wav'
    every track's excerpts share a fold, and the folds stay stratified."""
    from helpers.audio import tone, write_audio

    from elm_audio.evaluation.protocols import make_splits
    from elm_audio.settings.components import build_dataset

    root = tmp_path / "tracks"
    for label, base in (("rock", 200.0), ("jazz", 900.0)):
        for track in range(8):
            for n in range(1 + track % 4):  # 1 to 4 excerpts a track
                write_audio(root / label / f"{label}{track}_{n}.wav", tone(base + 10 * track, 0.2, 8000), 8000)
    cfg = compose(["dataset=folder", f"dataset.root={root}", "dataset.n_folds=4", r"dataset.group='(.*)_\d+\.wav'"])
    index = build_dataset(cfg).index()
    track = {c.clip_id: c.clip_id.rsplit("_", 1)[0] for c in index.clips}
    assert {c.group for c in index.clips} == set(track.values())  # the pattern's group: <class>/<track>
    for split in make_splits(index, "honest"):
        sides = [{track[index.clips[i].clip_id] for i in rows} for rows in (split.train, split.validation, split.test)]
        assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    per_fold = Counter((c.fold, c.label) for c in index.clips)
    assert all(per_fold[(k, label)] > 0 for k in range(1, 5) for label in ("rock", "jazz"))
    # without the pattern, excerpts of a track land in different folds
    plain = build_dataset(compose(["dataset=folder", f"dataset.root={root}", "dataset.n_folds=4"])).index()
    assert any(len({c.fold for c in plain.clips if track[c.clip_id] == t}) > 1 for t in set(track.values()))


def test_the_data_check_counts_groups_and_lists_those_that_straddle_fixed_splits(class_folder, tmp_path, capsys):
    from elm_audio.data import main as data_main

    lists = {p: tmp_path / f"{p}.txt" for p in ("train", "validation", "test")}
    lists["train"].write_text("low/low_0.wav\nhigh/high_0.wav\nlow/low_1.wav\n")
    lists["validation"].write_text("low/low_2.wav\nhigh/high_2.wav\n")
    lists["test"].write_text("low/low_10.wav\nhigh/high_11.wav\nhigh/high_1.wav\n")
    args = ["dataset.split_lists={" + ", ".join(f"{p}: '{path}'" for p, path in lists.items()) + "}"]
    code = data_main(["check", "dataset=folder", f"dataset.root={class_folder}", r"dataset.group='/(\w+)_1'", *args])
    out = capsys.readouterr().out
    # low_1 (train) and low_10 (test) are one group "low"; high_1 (test) and high_11 (test) are one
    assert "groups across splits (1):\n    low: train, test" in out and "across splits" in out
    assert code == 0
