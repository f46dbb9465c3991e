"""The paper's datasets read from copies in their exact layouts, complete and broken."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers.layouts import (
    make_ballroom,
    make_extended_ballroom,
    make_gtzan,
    make_us8k,
    us8k_rows,
)
from helpers.runs import logged_runs, run_cli, run_here

from elm_audio.config import compose
from elm_audio.data import main as data_main
from elm_audio.datasets import DatasetError
from elm_audio.datasets.check import CheckReport
from elm_audio.datasets.gtzan import GENRES, split_lists
from elm_audio.settings.components import build_dataset

LISTS = Path(__file__).parents[1] / "src" / "elm_audio" / "resources" / "gtzan_fault_filtered"


def dataset(name: str, root: Path, *overrides: str):
    return build_dataset(compose([f"dataset={name}", f"dataset.root={root}", *overrides]))


def check(name: str, root: Path, *overrides: str, capsys=None) -> tuple[int, str]:
    code = data_main(["check", f"dataset={name}", f"dataset.root={root}", *overrides])
    return code, capsys.readouterr().out if capsys else ""


# --- GTZAN -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gtzan_original(tmp_path_factory) -> Path:
    return make_gtzan(tmp_path_factory.mktemp("gtzan") / "gtzan", "original")


@pytest.fixture
def gtzan_mirror(tmp_path) -> Path:
    return make_gtzan(tmp_path / "kaggle" / "Data", "mirror")


def test_the_shipped_split_is_the_fault_filtered_one():
    lists = split_lists()
    assert {p: len(v) for p, v in lists.items()} == {"train": 443, "validation": 197, "test": 290}
    assert (LISTS / "SOURCE.md").read_text().count("jongpillee/music_dataset_split") == 1


@pytest.mark.parametrize("where", ["above", "genres"])
def test_gtzan_partitions_are_the_lists_whatever_folder_root_names(gtzan_original, where):
    root = gtzan_original if where == "above" else gtzan_original / "genres"
    index = dataset("gtzan", root).index()
    assert index.protocol == "partitions" and index.labels == list(GENRES)
    by_part = {p: sorted(c.clip_id for c in index.clips if c.partition == p) for p in ("train", "validation", "test")}
    for part, listed in split_lists().items():
        assert by_part[part] == sorted(x.rsplit(".", 1)[0] for x in listed)
    clip = next(c for c in index.clips if c.clip_id == "blues/blues.00029")
    assert clip.partition == "train" and clip.label == "blues" and clip.path.endswith("genres/blues/blues.00029.au")
    assert all(c.label == c.clip_id.split("/")[0] for c in index.clips)


def test_gtzan_full_split_is_ten_stratified_folds_of_all_clips(gtzan_original):
    index = dataset("gtzan", gtzan_original, "dataset.split=full").index()
    assert len(index.clips) == 1000 and index.folds == list(range(1, 11))
    assert set(Counter((c.fold, c.label) for c in index.clips).values()) == {10}


def test_complete_gtzan_copy_checks_ok(gtzan_original, capsys):
    code, out = check("gtzan", gtzan_original, capsys=capsys)
    assert code == 0, out
    assert "clips found    930 of 930 expected" in out
    assert "train 443/443, validation 197/197, test 290/290" in out
    assert "sample rates   22050 Hz x 930" in out and "result         OK" in out


def test_kaggle_mirror_with_its_unreadable_jazz_00054(gtzan_mirror, capsys):
    bad = gtzan_mirror / "genres_original" / "jazz" / "jazz.00054.wav"
    bad.write_bytes(b"RIFF....WAVEfmt broken")
    code, out = check("gtzan", gtzan_mirror.parent, capsys=capsys)  # root above Data/
    assert code == 1
    assert "unreadable (1):\n    jazz/jazz.00054.wav: cannot be read as audio" in out
    assert "dataset.on_bad_clip=skip" in out
    code, out = check("gtzan", gtzan_mirror, "dataset.on_bad_clip=skip", capsys=capsys)
    assert code == 0 and "1 unreadable clip(s) will be skipped" in out


def test_broken_gtzan_copy_names_missing_and_extra_files(gtzan_mirror, capsys):
    genres = gtzan_mirror / "genres_original"
    (genres / "blues" / "blues.00029.wav").unlink()  # in the train list
    (genres / "rock" / "notes.txt").write_text("x")  # not audio: ignored
    shutil.copy(genres / "rock" / "rock.00001.wav", genres / "rock" / "rock.00001 (copy).wav")
    (genres / "hiphop").rename(genres / "hip-hop")  # a wrong folder name
    code, out = check("gtzan", gtzan_mirror, capsys=capsys)
    assert code == 1
    n_hiphop = sum(x.startswith("hiphop/") for v in split_lists().values() for x in v)
    assert f"missing ({n_hiphop + 1}):" in out and "blues/blues.00029.wav" in out and "hiphop/hiphop.000" in out
    assert "hip-hop/ (not a GTZAN genre)" in out and "rock/rock.00001 (copy).wav" in out
    assert "no clips of class(es) hiphop" in out


@pytest.mark.slow
def test_a_gtzan_run_stops_on_a_missing_clip_and_skips_an_unreadable_one_when_asked(gtzan_mirror, tmp_path):
    genres = gtzan_mirror / "genres_original"
    (genres / "jazz" / "jazz.00054.wav").write_bytes(b"not a wav")
    # frames: the MFCC of each 0.05 s clip, tiled, rather than of the clip repeated to 29 s
    base = ["dataset=gtzan", f"dataset.root={gtzan_mirror}", "frontend=mfcc", "audio.fit_stage=frames", "extract.progress=false"]
    proc = run_cli("elm_audio", *base, cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "jazz/jazz.00054.wav: is named .wav but is not a WAV (RIFF) file" in proc.stderr
    assert not [p for p in (tmp_path / "cache").glob("*") if p.is_dir() and len(p.name) == 20]

    run_here(tmp_path, *base, "dataset.on_bad_clip=skip")
    client, runs = logged_runs(tmp_path, "gtzan")
    (run,) = [r for r in runs if r.info.status == "FINISHED"]
    assert run.data.tags["bad_clips"] == "1"
    listing = Path(client.download_artifacts(run.info.run_id, "bad_clips.tsv", str(tmp_path))).read_text()
    assert listing.startswith("jazz/jazz.00054\t")
    assert "test_accuracy" in run.data.metrics and "fold1_test_accuracy" not in run.data.metrics

    (genres / "blues" / "blues.00029.wav").unlink()
    with pytest.raises(DatasetError, match="lacks 1 file\\(s\\) the gtzan protocol needs") as err:
        run_here(tmp_path, *base, "dataset.on_bad_clip=skip")
    assert "blues/blues.00029.wav" in str(err.value)


# --- Ballroom ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extended_ballroom(tmp_path_factory) -> Path:
    return make_extended_ballroom(tmp_path_factory.mktemp("eb") / "extended_ballroom")


def test_extended_ballroom_has_13_classes_in_10_stratified_shuffled_folds(extended_ballroom, capsys):
    index = dataset("extended_ballroom", extended_ballroom).index()
    assert len(index.clips) == 4180 and len(index.labels) == 13 and index.folds == list(range(1, 11))
    per_fold_class = Counter((c.fold, c.label) for c in index.clips)
    for label in index.labels:
        sizes = [per_fold_class[(k, label)] for k in range(1, 11)]
        assert max(sizes) - min(sizes) <= 1  # stratified
    assert all(Path(c.path).parent.name == c.label for c in index.clips)
    other_seed = dataset("extended_ballroom", extended_ballroom, "dataset.fold_seed=1").index()
    assert [c.fold for c in other_seed.clips] != [c.fold for c in index.clips]
    code, out = check("extended_ballroom", extended_ballroom, capsys=capsys)
    assert code == 0 and "clips found    4180 of 4180 expected" in out


def test_paper_mode_uses_the_original_unshuffled_folds(extended_ballroom):
    paper = dataset("extended_ballroom", extended_ballroom).index("paper")
    chacha = [c.fold for c in paper.clips if c.label == "Chacha"]
    assert chacha == sorted(chacha)  # consecutive clips of a class share a fold
    assert paper.notes["fold_seed"] == "unshuffled"


def test_broken_extended_ballroom_copy(tmp_path, capsys):
    root = make_extended_ballroom(tmp_path / "eb")
    (root / "Wcswing").rename(root / "WCSwing")  # a wrong folder name
    shutil.copy(next((root / "Jive").glob("*.mp3")), root / "Jive" / "extra.wav")
    code, out = check("extended_ballroom", root, capsys=capsys)
    assert code == 1
    assert "missing (1):\n    Wcswing/" in out and "WCSwing/ (not a extended_ballroom class folder)" in out
    assert "Jive/extra.wav (expected .mp3 files)" in out and "no clips of class(es) Wcswing" in out


def test_ballroom_merges_the_three_rumba_folders(tmp_path, capsys):
    root = make_ballroom(tmp_path / "ballroom")
    for where in (root, root / "BallroomData"):
        index = dataset("ballroom", where).index()
        counts = Counter(c.label for c in index.clips)
        assert len(counts) == 8 and counts["Rumba"] == 7 + 51 + 40 and sum(counts.values()) == 698
    code, out = check("ballroom", root, capsys=capsys)
    assert code == 0 and "clips found    698 of 698 expected" in out


def test_an_incomplete_ballroom_copy_passes_the_check_with_a_loud_warning(tmp_path, capsys):
    """A run gives the protocol on what is there (nothing names the files that are gone), so the
    check says so too, and warns that the results do not compare with published ones."""
    root = make_ballroom(tmp_path / "ballroom")
    for f in list((root / "BallroomData" / "Waltz").glob("*.wav"))[:10]:
        f.unlink()
    code, out = check("ballroom", root, capsys=capsys)
    assert code == 0 and "WARNING        INCOMPLETE COPY of ballroom: 688 clips where the published dataset has 698" in out


# --- UrbanSound8K --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def us8k(tmp_path_factory) -> Path:
    return make_us8k(tmp_path_factory.mktemp("us8k") / "UrbanSound8K")


def test_us8k_classes_and_folds_come_from_the_csv(us8k, capsys):
    index = dataset("us8k", us8k).index()
    assert len(index.clips) == 8732 and index.folds == list(range(1, 11)) and len(index.labels) == 10
    rows = {r["slice_file_name"]: r for r in us8k_rows()}
    for clip in index.clips[:500]:
        row = rows[Path(clip.path).name]
        assert clip.label == row["class"] and clip.fold == row["fold"]
        assert Path(clip.path).parent.name == f"fold{row['fold']}"
    code, out = check("us8k", us8k, capsys=capsys)
    assert code == 0, out
    assert "fold1 873/873" in out and "fold10 837/837" in out and "sample rates   44100 Hz x 8732" in out


def test_us8k_labels_never_come_from_file_names(tmp_path):
    rows = us8k_rows()[:40]
    rows[0] = {**rows[0], "class": "siren"}  # the name says another classID: the CSV wins
    root = make_us8k(tmp_path / "UrbanSound8K", rows)
    index = dataset("us8k", root).index()
    assert next(c for c in index.clips if c.path.endswith(rows[0]["slice_file_name"])).label == "siren"


def test_us8k_clips_are_repeat_padded(tmp_path):
    """A 4 s clip reaches the front-end repeated until it fills the input, as the paper does."""
    from elm_audio.extraction.extract import ClipAudio
    from elm_audio.extraction.inputs import InputSettings
    from elm_audio.settings.components import build_frontend
    from elm_audio.sound.decode import load

    root = make_us8k(tmp_path / "UrbanSound8K", us8k_rows()[:20])
    cfg = compose(["dataset=us8k", f"dataset.root={root}", "frontend=sample_level"])
    clip = build_dataset(cfg).index().clips[0]
    audio = ClipAudio([clip], build_frontend(cfg), InputSettings(cfg.audio.fit, cfg.audio.fit_stage, cfg.audio.stft_padding))
    _, fitted, _, _ = audio[0]
    decoded = load(clip.path)
    assert len(fitted) == 350_000 and len(decoded) < 10_000
    np.testing.assert_array_equal(fitted, np.resize(decoded, 350_000))  # the clip, again and again


def test_broken_us8k_copy(tmp_path, capsys):
    rows = us8k_rows()
    root = make_us8k(tmp_path / "UrbanSound8K", rows)
    moved = root / "audio" / f"fold{rows[0]['fold']}" / rows[0]["slice_file_name"]
    moved.rename(root / "audio" / "fold10" / "misplaced.wav")
    empty = root / "audio" / f"fold{rows[1]['fold']}" / rows[1]["slice_file_name"]
    import numpy as np
    import soundfile as sf

    sf.write(empty, np.zeros(0, dtype=np.float32), 44_100)
    code, out = check("us8k", root, capsys=capsys)
    assert code == 1
    assert f"missing (1):\n    audio/fold{rows[0]['fold']}/{rows[0]['slice_file_name']}" in out
    assert "extra (1):\n    audio/fold10/misplaced.wav" in out
    assert f"zero-length (1):\n    audio/fold{rows[1]['fold']}/{rows[1]['slice_file_name']}" in out
    (root / "metadata" / "UrbanSound8K.csv").unlink()
    with pytest.raises(DatasetError, match=r"metadata/UrbanSound8K.csv not found"):
        dataset("us8k", root).index()


def test_check_without_a_root_says_which_key_to_set(capsys):
    code = data_main(["check", "dataset=us8k"])
    assert code == 2 and "dataset=us8k needs dataset.root=<folder>" in capsys.readouterr().err


def test_check_report_lists_sample_rates_and_durations(tmp_path):
    root = make_ballroom(tmp_path / "b")
    data = dataset("ballroom", root)
    report = CheckReport.from_survey(data, data.survey(), read_headers=True)
    assert report.sample_rates == Counter({22_050: 698}) and report.ok
    assert min(report.durations.values()) == pytest.approx(0.05, abs=1e-3)
