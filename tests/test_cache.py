import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from elm_audio.cache import FeatureCache
from elm_audio.config import compose
from elm_audio.plan import make_plan


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
    procs = [ctx.Process(target=_compute_or_load, args=(tmp_path / "c", "k1", counter, queue)) for _ in range(2)]
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
        cache.store("k", 6, 3, fail_halfway)
    assert cache.load("k") is None
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]


def _killed_midway(root):
    cache = FeatureCache(root)

    def hang(rows):
        rows[:2] = 5.0
        os.kill(os.getpid(), signal.SIGKILL)

    cache.store("k", 6, 3, hang)


def test_a_killed_extraction_is_redone_by_the_next_run(tmp_path):
    proc = mp.get_context("spawn").Process(target=_killed_midway, args=(tmp_path,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    cache = FeatureCache(tmp_path)
    assert cache.load("k") is None
    done = cache.store("k", 6, 3, lambda rows: {"clip_ids": list("abcdef"), "labels": ["x"] * 6})
    assert done.matrix.shape == (6, 3) and cache.load("k").clip_ids == list("abcdef")


def test_the_key_changes_with_everything_that_determines_the_features(tmp_path):
    base = ["dataset.clips_per_class=3", "dataset.duration=0.5", "dataset.n_folds=3", f"cache.dir={tmp_path}"]

    def key(*extra):
        return make_plan(compose(base + list(extra))).key

    reference = key()
    assert key() == reference
    changed = [
        key("seed=1"),
        key("feature_size=large"),
        key("frontend=timbral"),
        key("audio.fit=crop_or_zero"),
        key("dataset.clips_per_class=4"),
    ]
    assert reference not in changed and len(set(changed)) == len(changed)
    # what only affects the classifier or the protocol shares the features
    assert key("classifier=elm", "protocol.mode=paper", "dataset.fold_seed=4") == reference
