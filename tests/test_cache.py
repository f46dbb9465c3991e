import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from helpers.runs import logged_runs, run_here

from elm_audio.config import compose
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load
from elm_audio.stores import contents
from elm_audio.stores.cache import FeatureCache

KEY = "0123456789abcdef0000"  # a features key as cache_key makes them


def _fill_slowly(counter_path, rows, delay=0.5):
    with open(counter_path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    for i in range(len(rows)):
        rows[i] = i
        time.sleep(delay / len(rows))
    return {"clip_ids": [f"c{i}" for i in range(len(rows))], "labels": ["x"] * len(rows)}


def _compute_or_load(root, key, counter_path, out_queue):
    cache = FeatureCache(root)
    with cache.lock(key):
        features = cache.load(key) or cache.store(key, 6, 3, lambda rows: _fill_slowly(counter_path, rows))
    out_queue.put(features.matrix.tolist())


def test_two_processes_needing_the_same_key_compute_it_once(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    counter = tmp_path / "computed.txt"
    procs = [ctx.Process(target=_compute_or_load, args=(tmp_path / "c", "0123456789abcdef0001", counter, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert len(counter.read_text().split()) == 1
    assert results[0] == results[1] == np.repeat(np.arange(6.0)[:, None], 3, axis=1).tolist()


def test_a_failed_extraction_leaves_nothing_that_reads_as_complete(tmp_path):
    cache = FeatureCache(tmp_path)

    def fail_halfway(rows):
        rows[:3] = 1.0
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        cache.store(KEY, 6, 3, fail_halfway)
    assert cache.load(KEY) is None
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]


def _killed_midway(root):
    cache = FeatureCache(root)

    def hang(rows):
        rows[:2] = 5.0
        os.kill(os.getpid(), signal.SIGKILL)

    cache.store(KEY, 6, 3, hang)


def test_a_killed_extraction_is_redone_by_the_next_run(tmp_path):
    proc = mp.get_context("spawn").Process(target=_killed_midway, args=(tmp_path,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    cache = FeatureCache(tmp_path)
    assert cache.load(KEY) is None
    done = cache.store(KEY, 6, 3, lambda rows: {"clip_ids": list("abcdef"), "labels": ["x"] * 6})
    assert done.matrix.shape == (6, 3) and cache.load(KEY).clip_ids == list("abcdef")


def test_the_key_changes_with_everything_that_determines_the_features(tmp_path):
    base = ["dataset.clips_per_class=3", "dataset.duration=0.5", "dataset.n_folds=3", f"cache.dir={tmp_path}"]

    def key(*extra):
        return make_plan(load(compose(base + list(extra)))).key

    reference = key()
    assert key() == reference
    changed = [
        key("seed=1"),
        key("feature_size=large"),
        key("frontend=timbral"),
        key("audio.fit=crop_or_zero"),
        key("dataset.clips_per_class=4"),
        key("dataset.seed=1"),  # the built-in dataset's clips: same names and sizes, other bytes
    ]
    assert reference not in changed and len(set(changed)) == len(changed)
    # what only affects the classifier or the protocol shares the features
    assert key("classifier=elm", "protocol.mode=paper", "dataset.fold_seed=4") == reference


@pytest.fixture()
def tones(tmp_path):
    from helpers.audio import tone_folder

    return tone_folder(tmp_path / "data", 6)


def folder_run(tmp_path, root) -> list[str]:
    return ["dataset=folder", f"dataset.root={root}", "dataset.n_folds=3", "frontend=mfcc", f"cache.dir={tmp_path / 'cache'}",
            "extract.progress=false", "extract.num_workers=0"]  # fmt: skip


def _run(tmp_path, root):
    """One in-process run of ``root`` as a folder dataset; its plan and what it printed."""
    args = folder_run(tmp_path, root)
    out, _ = run_here(tmp_path, *args)
    return make_plan(load(compose(args))), out


@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
def test_two_mounts_of_one_dataset_share_its_cache_entry(tones, tmp_path):
    mounts = [tmp_path / "srv1" / "us8k", tmp_path / "mnt" / "nfs" / "us8k"]
    for mount in mounts:
        mount.mkdir(parents=True)
        if subprocess.run(["mount", "--bind", str(tones), str(mount)], capture_output=True).returncode:
            pytest.skip("mounting is not permitted here")
    try:
        first, out1 = _run(tmp_path, mounts[0])
        second, out2 = _run(tmp_path, mounts[1])
    finally:
        for mount in mounts:
            subprocess.run(["umount", str(mount)], capture_output=True)
    assert "features: from the cache" not in out1 and "features: from the cache" in out2
    assert first.key == second.key and first.index.clips[0].path != second.index.clips[0].path
    _, runs = logged_runs(tmp_path, "folder")
    assert len({r.inputs.dataset_inputs[0].dataset.digest for r in runs}) == 1  # one dataset to MLflow too
    assert [r.data.params["dataset.root"] for r in runs] == [str(m) for m in mounts]
    assert runs[1].data.tags["features_run_id"] == runs[0].info.run_id


def test_a_clip_rewritten_with_its_size_and_mtime_kept_is_extracted_again(tones, tmp_path, monkeypatch):
    first, _ = _run(tmp_path, tones)
    clip = tones / "low" / "low_2.wav"
    before = clip.stat()
    (tmp_path / "ref").touch()
    subprocess.run(["touch", "-r", str(clip), str(tmp_path / "ref")], check=True)
    data = bytearray(clip.read_bytes())
    data[-200:] = bytes(200)  # the last samples silenced: same size, other bytes
    clip.write_bytes(bytes(data))
    subprocess.run(["touch", "-r", str(tmp_path / "ref"), str(clip)], check=True)
    assert (clip.stat().st_size, clip.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second, out = _run(tmp_path, tones)
    assert "features: from the cache" not in out and second.key != first.key
    changed = [i for i, (a, b) in enumerate(zip(first.contents, second.contents)) if a != b]
    assert [first.contents[i].path for i in changed] == ["low/low_2.wav"]
    third, out = _run(tmp_path, tones)
    assert third.key == second.key and "features: from the cache" in out

    def reread(path):
        raise AssertionError(f"{path} read again")

    monkeypatch.setattr(contents, "file_sha256", reread)  # unchanged files: their digests are remembered
    assert make_plan(load(compose(folder_run(tmp_path, tones)))).key == second.key


def test_ctrl_c_between_a_checked_file_and_its_checksum_waits_for_both(tmp_path, monkeypatch):
    """An interrupted training's checkpoint is written with write_checked: Ctrl-C landing after
    the file is renamed into place but before its checksum is must not leave the new file beside
    the old checksum (the resume would set the checkpoint aside and train from epoch 1)."""
    from elm_audio.stores import cache as cache_module
    from elm_audio.stores.cache import read_checked, write_checked

    path = tmp_path / "last.pt"
    write_checked(path, b"epoch 7")
    real_write_new = cache_module.write_new

    def interrupted_after_the_file(target, data):
        real_write_new(target, data)
        if target == path:  # the file is in place, its checksum not yet
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(cache_module, "write_new", interrupted_after_the_file)
    with pytest.raises(KeyboardInterrupt):
        write_checked(path, b"epoch 8")
    assert read_checked(path) == b"epoch 8"  # both written, then the interrupt delivered
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler put back
