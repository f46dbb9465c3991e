"""A cache on a shared server: what careless or hostile colleagues who can write the same folders
do to it (planted links and FIFOs, entries edited by hand, clips rewritten mid-extraction,
another umask), done with real links, FIFOs, users and umasks."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers.audio import tone, tone_folder
from helpers.runs import logged_runs, run_here
from helpers.users import ALICE, BOB, GROUP, as_user

from elm_audio.datasets import DatasetError
from elm_audio.extraction import extract as extract_module
from elm_audio.stores.cache import FeatureCache, read_checked, write_checked

KEY, OTHER = "0123456789abcdef0000", "0123456789abcdef0001"


def _entry(cache: FeatureCache, key: str, value: float, labels: list[str] | None = None):
    ids = ["a", "b", "c"]
    return cache.store(key, 3, 2, lambda rows: rows.fill(value) or {"clip_ids": ids, "labels": labels or ["x", "y", "z"]})


def test_a_write_replaces_links_planted_under_its_names_and_never_writes_through_them(tmp_path):
    """A colleague plants links under the names a checkpoint's write would use (its temporary
    names were guessable: ``.tmp-<name>-<pid>``), each to a file of the victim's elsewhere."""
    folder, victim = tmp_path / "training" / "fold1", tmp_path / "home"
    folder.mkdir(parents=True)
    victim.mkdir()
    names = ["last.pt", "last.pt.sha256", f".tmp-last.pt-{os.getpid()}", f".tmp-last.pt.sha256-{os.getpid()}"]
    for i, name in enumerate(names):
        (victim / f"precious{i}").write_text("the victim's own file")
        (folder / name).symlink_to(victim / f"precious{i}")
    write_checked(folder / "last.pt", b"checkpoint bytes")
    assert all((victim / f"precious{i}").read_text() == "the victim's own file" for i in range(len(names)))
    assert not (folder / "last.pt").is_symlink() and read_checked(folder / "last.pt") == b"checkpoint bytes"
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-") and not p.is_symlink()]  # nothing half-written


def test_an_entry_whose_matrix_is_a_link_to_another_entrys_is_set_aside(tmp_path):
    """features.npy replaced by a link to another entry's, meta.json forged to match it: read
    as it was, the other entry's features scored this dataset."""
    cache = FeatureCache(tmp_path)
    _entry(cache, KEY, 1.0)
    other = _entry(cache, OTHER, 2.0)
    mine = tmp_path / KEY
    (mine / "features.npy").unlink()
    (mine / "features.npy").symlink_to(other.path / "features.npy")
    meta = json.loads((mine / "meta.json").read_text())
    (mine / "meta.json").write_text(json.dumps({**meta, "sha256": json.loads((other.path / "meta.json").read_text())["sha256"]}))
    assert cache.load(KEY) is None
    assert "symbolic link" in cache.damaged[0] and not mine.exists()
    assert np.all(cache.load(OTHER).matrix == 2.0)  # the other entry is untouched


def test_an_entry_folder_that_is_a_link_is_not_used(tmp_path):
    cache = FeatureCache(tmp_path)
    other = _entry(cache, OTHER, 2.0)
    (tmp_path / KEY).symlink_to(other.path)
    assert cache.load(KEY) is None and "not a folder of its own" in cache.damaged[0]
    assert cache.load(OTHER) is not None


def test_a_fifo_in_place_of_meta_json_is_damage_not_a_hang(tmp_path):
    cache = FeatureCache(tmp_path)
    entry = _entry(cache, KEY, 1.0).path
    (entry / "meta.json").unlink()
    os.mkfifo(entry / "meta.json")
    found: list = []
    reader = threading.Thread(target=lambda: found.append(cache.load(KEY)), daemon=True)
    reader.start()
    reader.join(10)
    try:
        assert not reader.is_alive(), "loading the entry blocked on its FIFO"
        assert found == [None] and "FIFO" in cache.damaged[0]
    finally:
        if reader.is_alive():  # let the blocked reader go: a writer opens and closes the FIFO
            os.close(os.open(entry / "meta.json", os.O_WRONLY | os.O_NONBLOCK))


def _folder_of_tones(root: Path, classes: dict[str, float], n: int = 3) -> Path:
    return tone_folder(root, n, classes, name="{i}")


FOLDER = ["dataset=folder", "dataset.n_folds=3", "extract.progress=false", "extract.num_workers=0"]


def test_an_entry_whose_labels_were_changed_by_hand_is_not_used(tmp_path):
    """Labels shuffled in an entry's meta.json (its checksum covers the matrix only): the next
    run says so, computes the features again and scores as the first run did."""
    overrides = [*FOLDER, f"dataset.root={_folder_of_tones(tmp_path / 'data', {'low': 220.0, 'high': 1760.0})}"]
    run_here(tmp_path, *overrides)
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir() and len(p.name) == 20]
    meta = json.loads((entry / "meta.json").read_text())
    meta["labels"] = list(reversed(meta["labels"]))
    (entry / "meta.json").write_text(json.dumps(meta))
    out, err = run_here(tmp_path, *overrides)
    assert "not the dataset's" in err and "computing the features again" in err and "from the cache" not in out
    _, runs = logged_runs(tmp_path, dataset="folder")
    assert runs[0].data.metrics["test_accuracy"] == runs[1].data.metrics["test_accuracy"]
    assert json.loads((entry / "meta.json").read_text())["labels"] != meta["labels"]


def test_a_clip_rewritten_during_extraction_is_not_cached_under_its_old_digest(tmp_path):
    """A colleague rewrites a clip (same size, new bytes) while the run extracts: its row may be
    of either version, so nothing is cached under the key of the bytes digested before."""
    root = _folder_of_tones(tmp_path / "data", {"low": 220.0, "high": 1760.0})
    victim = root / "high" / "2.wav"
    real_load = extract_module.load

    def load_while_a_colleague_writes(path, *args, **kwargs):
        if path.endswith("low/0.wav"):
            data, sr = sf.read(victim, dtype="float32")
            sf.write(victim, -data, sr, subtype="FLOAT")  # new bytes, same length
        return real_load(path, *args, **kwargs)

    overrides = [*FOLDER, f"dataset.root={root}"]
    with mock.patch.object(extract_module, "load", load_while_a_colleague_writes), pytest.raises(DatasetError) as err:
        run_here(tmp_path, *overrides)
    assert "changed while the features were extracted" in str(err.value) and "high/2.wav" in str(err.value)
    assert not [p for p in (tmp_path / "cache").iterdir() if len(p.name) == 20]  # nothing cached
    run_here(tmp_path, *overrides)  # the dataset no longer changes: cached under its bytes' digest
    assert len([p for p in (tmp_path / "cache").iterdir() if len(p.name) == 20]) == 1


def test_class_names_that_mlflow_cannot_hold_keep_metrics_of_their_own(tmp_path):
    """``a?b`` and ``a*b`` read the same once MLflow's forbidden characters are replaced, and a
    250-character name is longer than MLflow's metric names may be."""
    long_name = "l" * 250
    root = _folder_of_tones(tmp_path / "data", {"a?b": 220.0, "a*b": 880.0, long_name: 3520.0})
    run_here(tmp_path, *FOLDER, f"dataset.root={root}")
    client, (run,) = logged_runs(tmp_path, dataset="folder")
    metrics = sorted(k for k in run.data.metrics if k.startswith("class_accuracy/"))
    assert len(metrics) == 3 and all(len(k) <= 250 for k in metrics)
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "class_accuracy.csv", str(tmp_path)))
    assert sorted(table["label"]) == sorted(["a?b", "a*b", long_name]) and sorted(table["metric"]) == metrics
    assert all(run.data.metrics[m] == r for m, r in zip(table["metric"], table["recall"]))


def test_non_finite_fp32_features_are_not_blamed_on_reduced_precision(tmp_path):
    root = _folder_of_tones(tmp_path / "data", {"low": 220.0, "high": 1760.0})
    # finite samples (the decoder refuses others) that the waveform front-end's float32 cannot hold
    sf.write(root / "high" / "1.wav", 1e38 * tone(1800.0, 1.0, 16_000), 16_000, subtype="DOUBLE")
    with pytest.raises(DatasetError) as err:
        run_here(tmp_path, *FOLDER, f"dataset.root={root}", "frontend=sample_level", "precision=fp32")
    message = str(err.value)
    assert "non-finite features" in message and "high/1" in message
    assert "fp16" not in message and "bf16" not in message and "fp32 overflowed" in message


# --- two users of one group, each with a umask of their own (real uids, set in forked children)

@pytest.fixture
def group_folder(tmp_path: Path) -> Iterator[Path]:
    """A group's folder (set-group-id, group-writable) where the two users can reach it."""
    if os.geteuid() != 0:
        pytest.skip("two users of one group: needs root to become them")
    warm = FeatureCache(tmp_path / "warm")  # everything the children use, imported beforehand
    with warm.lock(KEY):
        _entry(warm, KEY, 0.0)
        warm.load(KEY)
    shared = Path(tempfile.mkdtemp(prefix="elm_audio-group-"))  # pytest's own folders are root's alone
    try:
        os.chown(shared, 0, GROUP)
        shared.chmod(0o2770)
        yield shared
    finally:
        shutil.rmtree(shared)


def test_a_group_shares_entries_and_locks_whatever_their_umask(group_folder):
    cache = FeatureCache(group_folder / "cache")

    def alice() -> list:
        with cache.lock(KEY):
            entry = _entry(cache, KEY, 3.0)
        return [entry.path.stat().st_mode, (group_folder / "cache" / f"{KEY}.lock").stat().st_mode]

    def bob() -> list:
        with cache.lock(KEY):  # alice's lock file, opened for writing
            found = cache.load(KEY)
        return [None if found is None else float(found.matrix.sum()), cache.damaged]

    alice_sees = as_user(ALICE, 0o027, alice)
    assert "ok" in alice_sees, alice_sees
    entry_mode, lock_mode = alice_sees["ok"]
    assert entry_mode & stat.S_ISGID, "the entry folder lost the cache folder's set-group-id bit"
    assert lock_mode & 0o060 == 0o060
    assert as_user(BOB, 0o077, bob) == {"ok": [18.0, []]}


def test_an_entry_the_reader_cannot_read_is_not_judged_damaged(group_folder):
    cache = FeatureCache(group_folder / "cache")

    def alice() -> None:
        with cache.lock(KEY):
            _entry(cache, KEY, 3.0).path.chmod(0o700)  # as a careless user, or an older version, left it

    assert as_user(ALICE, 0o022, alice) == {"ok": None}
    bob_sees = as_user(BOB, 0o022, lambda: cache.load(KEY))
    assert bob_sees["error"].startswith("CacheError") and "chmod -R g+rX" in bob_sees["error"]
    assert (group_folder / "cache" / KEY / "features.npy").exists()  # not moved aside
