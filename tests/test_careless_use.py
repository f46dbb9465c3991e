"""Nothing wrong gets through: each of the failures found by probing the tool as a careless or
unlucky user would, reproduced, with what the tool now does; and a fuzz test of damaged audio."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers.audio import tone, tone_folder, write_audio
from helpers.runs import QUICK, logged_runs, run_cli, run_here, seed_empty_store

from elm_audio.config import ConfigError, compose
from elm_audio.data import main as data_main
from elm_audio.datasets import DatasetError
from elm_audio.settings.validate import validate
from elm_audio.stores.cache import CacheError, FeatureCache
from elm_audio.stores.processes import identity
from elm_audio.stores.tracking import connect

SMALL = [*QUICK, "frontend=mfcc"]
FOLDER = ["extract.progress=false", "extract.num_workers=0", "frontend=mfcc"]  # with dataset=folder


def cache_entries(cwd: Path) -> list[Path]:
    return [p for p in (cwd / "cache").iterdir() if p.is_dir() and len(p.name) == 20]


# 1. secrets -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_appears_nowhere_and_a_dead_server_is_reported_in_seconds(tmp_path):
    start = time.perf_counter()
    proc = run_cli("elm_audio", *SMALL, "tracking.uri=http://alice:SECRET@127.0.0.1:9", cwd=tmp_path, check=False)
    assert time.perf_counter() - start < 60  # not MLflow's minutes of retries
    assert proc.returncode != 0 and "no MLflow server answers" in proc.stderr and "Traceback" not in proc.stderr
    assert "http://alice:***@127.0.0.1:9" in proc.stderr
    assert "SECRET" not in proc.stdout + proc.stderr
    saved = list((tmp_path / "outputs").rglob("*.yaml")) + list((tmp_path / "outputs").rglob("*.log"))
    assert any(p.name == "overrides.yaml" for p in saved)
    assert not [p for p in saved if "SECRET" in p.read_text()]
    assert not (tmp_path / "mlruns").exists()


# 2. the cache trusts nothing on disk ----------------------------------------------------------


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cached")
    run_cli("elm_audio", *SMALL, cwd=cwd)
    _, (run,) = logged_runs(cwd)
    return cwd, run.data.metrics["test_accuracy"]


def damage_overwrite(entry: Path) -> None:
    m = np.load(entry / "features.npy", mmap_mode="r+")
    m[: len(m) // 2] = 0.0
    m.flush()


def damage_truncate_matrix(entry: Path) -> None:
    path = entry / "features.npy"
    path.write_bytes(path.read_bytes()[:1000])


def damage_truncate_meta(entry: Path) -> None:
    path = entry / "meta.json"
    path.write_text(path.read_text()[:50])


def damage_remove_matrix(entry: Path) -> None:
    (entry / "features.npy").unlink()


@pytest.mark.slow
@pytest.mark.xdist_group("damaged_cache")  # one `cached` entry, damaged and recomputed in turn
@pytest.mark.parametrize("damage", [damage_overwrite, damage_truncate_matrix, damage_truncate_meta, damage_remove_matrix])
def test_a_damaged_cache_entry_is_named_moved_aside_and_recomputed(cached, damage):
    cwd, accuracy = cached
    (entry,) = cache_entries(cwd)
    damage(entry)
    _, err = run_here(cwd, *SMALL)  # the run the CLI made above, again (in this process: see run_here)
    assert f"cache entry {entry} is damaged" in err and "computing the features again" in err
    _, runs = logged_runs(cwd)
    assert runs[-1].data.metrics["test_accuracy"] == accuracy  # the same features again
    assert runs[-1].data.tags["features_run_id"] == runs[-1].info.run_id  # computed by this run
    assert FeatureCache(cwd / "cache").load(entry.name) is not None
    assert list((cwd / "cache").glob(f".damaged-{entry.name}-*"))


def test_entries_are_shared_with_the_group_and_a_lock_that_fails_otherwise_is_reported(tmp_path):
    cache, key = FeatureCache(tmp_path), "0123456789abcdef0000"
    cache.store(key, 3, 2, lambda rows: {"clip_ids": list("abc"), "labels": ["x"] * 3})
    entry = tmp_path / key
    assert entry.stat().st_mode & 0o050 == 0o050 and (entry / "features.npy").stat().st_mode & 0o040
    (tmp_path / f"{key}.lock").unlink(missing_ok=True)
    (tmp_path / f"{key}.lock").mkdir()  # not a read-only cache: something is wrong with the disk
    with pytest.raises(CacheError, match=f"cache.dir={tmp_path}: cannot lock {key}"):
        with cache.lock(key):
            pass


@contextmanager
def read_only_view(folder: Path, mount_point: Path) -> Iterator[Path]:
    """``folder`` seen through a read-only bind mount: a cache on a read-only disk, which even
    root cannot write (chmod does not stop root)."""
    mount_point.mkdir()
    if subprocess.run(["mount", "--bind", str(folder), str(mount_point)], capture_output=True).returncode:
        pytest.skip("mounting is not permitted here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mount_point)], capture_output=True).returncode:
            pytest.skip("read-only remounting is not permitted here")
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
def test_a_read_only_cache_serves_the_features_it_holds_and_says_when_it_does_not(tmp_path):
    data = [*SMALL, f"dataset.root={tmp_path / 'cache' / 'synth'}"]  # the clips stay where they are
    run_here(tmp_path, *data)
    _, (first,) = logged_runs(tmp_path)
    with read_only_view(tmp_path / "cache", tmp_path / "read-only") as ro:
        out, _ = run_here(tmp_path, *data, f"cache.dir={ro}")
        assert "features: from the cache" in out
        _, runs = logged_runs(tmp_path)
        assert runs[-1].data.metrics["test_accuracy"] == first.data.metrics["test_accuracy"]
        assert runs[-1].data.tags["features_run_id"] == first.info.run_id

        missing = run_cli("elm_audio", *data, "seed=7", f"cache.dir={ro}", cwd=tmp_path, check=False)
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        assert f"cache.dir={ro}: cannot write there and it does not hold these features" in missing.stderr


def test_temporary_folders_of_dead_processes_are_cleaned(tmp_path):
    """Only a folder whose owner is proven gone: one left by a process of another pid namespace
    (a container sharing the cache), or without its owner's identity, may still be written."""
    dead = subprocess.run([sys.executable, "-c", "import json; from elm_audio.stores.processes import identity; print(json.dumps(identity()))"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    owner = json.loads(dead.stdout)

    def folder(name: str, who: dict | None) -> Path:
        path = tmp_path / f".tmp-k-{name}"
        path.mkdir(parents=True)
        (path / "features.npy").write_bytes(b"half")
        if who is not None:
            (path / "owner.json").write_text(json.dumps(who))
        return path

    stale = folder(f"{owner['pid']}-abc", owner)
    mine = folder(f"{os.getpid()}-xyz", identity())  # a live process's extraction is left alone
    elsewhere = folder(f"{owner['pid']}-ns", {**owner, "pid_ns": "pid:[1]"})
    unknown = folder(f"{owner['pid']}-old", None)
    entry = FeatureCache(tmp_path).store("0123456789abcdef0000", 1, 1, lambda rows: {"clip_ids": ["a"], "labels": ["x"]})
    assert not stale.exists() and mine.exists() and elsewhere.exists() and unknown.exists()
    assert sorted(p.name for p in entry.path.iterdir()) == ["features.npy", "meta.json"]


# 3-6. bad audio --------------------------------------------------------------------------------


@pytest.fixture()
def collection(tmp_path) -> Path:
    return tone_folder(tmp_path / "collection", 6)


def check(root: Path, capsys, *extra: str) -> tuple[int, str]:
    code = data_main(["check", "dataset=folder", f"dataset.root={root}", "dataset.n_folds=3", *extra])
    return code, capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode",
    [FOLDER, [*FOLDER[:2], "frontend=temporal", "weights=trained", "weights.max_epochs=2"]],  # features; cached inputs
    ids=["random", "trained"],
)
def test_a_cached_skip_does_not_bypass_on_bad_clip_error(collection, tmp_path, mode):
    (collection / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    args = ["dataset=folder", f"dataset.root={collection}", "dataset.n_folds=3", *mode]
    run_here(tmp_path, *args, "dataset.on_bad_clip=skip")
    with pytest.raises(DatasetError, match="on_bad_clip=skip") as err:  # the CLI says it in one line
        run_here(tmp_path, *args)
    assert "low/broken" in str(err.value)


def test_nan_samples_make_a_bad_clip_in_check_and_run(collection, tmp_path, capsys):
    signal_ = tone(440.0, 1.0, 16_000)
    signal_[100:200] = np.nan
    sf.write(collection / "low" / "nan.wav", signal_, 16_000, subtype="FLOAT")
    code, out = check(collection, capsys)
    assert code == 1 and "low/nan.wav: holds non-finite samples" in out
    run_here(tmp_path, "dataset=folder", f"dataset.root={collection}", "dataset.n_folds=3", "dataset.on_bad_clip=skip", *FOLDER)
    (entry,) = cache_entries(tmp_path)
    meta = json.loads((entry / "meta.json").read_text())
    assert list(meta["bad_clips"]) == ["low/nan"]
    rows = np.load(entry / "features.npy")
    usable = [i for i, c in enumerate(meta["clip_ids"]) if c not in meta["bad_clips"]]
    assert np.isfinite(rows[usable]).all()


def test_text_named_au_and_a_truncated_gtzan_file_are_not_audio(collection, tmp_path, capsys):
    (collection / "low" / "notes.au").write_text("these are my notes, not audio at all")
    (collection / "high" / "rock.00090.au").write_bytes(b"Not found")  # 9 bytes
    code, out = check(collection, capsys)
    assert code == 1
    assert "low/notes.au: is named .au but is not a Sun/NeXT .au file" in out
    assert "high/rock.00090.au: is named .au but is not a Sun/NeXT .au file" in out


def test_clips_far_shorter_than_the_others_are_reported(collection, capsys):
    write_audio(collection / "low" / "cut.wav", tone(300.0, 0.1, 16_000), 16_000)
    code, out = check(collection, capsys)
    assert code == 0 and "much shorter than the others (1):\n    low/cut" in out


def test_silent_clips_are_warned_about(collection, capsys):
    write_audio(collection / "high" / "quiet.wav", np.zeros((16_000, 1), np.float32), 16_000)
    code, out = check(collection, capsys)
    assert code == 0 and "silent (1):\n    high/quiet.wav" in out


def test_appledouble_and_hidden_files_are_ignored_and_broken_links_listed(collection, capsys):
    (collection / "low" / "._low_0.wav").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (collection / "low" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (collection / "high" / "gone.wav").symlink_to(collection / "nowhere.wav")
    code, out = check(collection, capsys)
    assert code == 0 and "clips found    12" in out and "._low_0" not in out
    assert "broken links (1):\n    high/gone.wav" in out


# 7-8. settings, checked before anything is read -------------------------------------------------


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["classifier.C=-1"], "classifier.C=-1 must be a float in the range (0.0, inf)"),
        (["classifier=elm", "classifier.alpha=-1"], "classifier.alpha=-1 must be a float in the range [0.0, inf)"),
        (["classifier=elm", "classifier.hidden_units=0"], "classifier.hidden_units=0 must be"),
        (["extract.batch_size=0"], "extract.batch_size=0 must be at least 1"),
        (["extract.num_workers=-1"], "extract.num_workers=-1 must be at least 0"),
        (["seed=abc"], "seed=abc must be a whole number"),
        (["dataset.n_folds=1"], "dataset.n_folds=1 must be at least 3"),
        (["cache.dir=/proc/elm_audio_cache"], "cache.dir=/proc/elm_audio_cache: cannot create or write there"),
        (["audio.min_fraction=2"], "audio.min_fraction=2 must be a number from 0 to below 1"),
    ],
)
def test_every_setting_is_checked_with_a_message_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose(["device=cpu", *overrides]))
    assert message in str(err.value)


@pytest.mark.parametrize("uri", ["foo://nowhere", "http://127.0.0.1:9"])
def test_a_tracking_uri_that_cannot_work_is_a_config_error_within_seconds(uri):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"tracking.uri=.*(no MLflow server answers|cannot be used)"):
        connect(uri)
    assert time.perf_counter() - start < 20


# 9. interruptions -------------------------------------------------------------------------------


def start_run(cwd: Path) -> subprocess.Popen:
    """A run whose extraction (300 clips, several seconds even on a fast CPU) is still going
    when wait_for_extraction returns."""
    env = {**os.environ, "ELM_AUDIO_CACHE": str(cwd / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    seed_empty_store(cwd)
    args = ["dataset.clips_per_class=50", "dataset.duration=6.0", "extract.progress=false", "extract.num_workers=1"]
    return subprocess.Popen([sys.executable, "-m", "elm_audio", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip


def wait_for_extraction(cwd: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while not list((cwd / "cache").glob(".tmp-*")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.0)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_ends_killed_with_one_line_and_leaves_no_half_written_features(tmp_path, signum):
    proc = start_run(tmp_path)
    wait_for_extraction(tmp_path, proc)
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, (out, err)
    assert "elm_audio: interrupted; run " in err and "ended as KILLED" in err
    _, (run,) = logged_runs(tmp_path)
    assert run.info.status == "KILLED"
    assert not list((tmp_path / "cache").glob(".tmp-*")) and not cache_entries(tmp_path)


@pytest.mark.slow
def test_a_run_killed_outright_is_marked_killed_by_the_next_run_which_cleans_its_leftovers(tmp_path):
    proc = start_run(tmp_path)
    wait_for_extraction(tmp_path, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    _, (killed,) = logged_runs(tmp_path)
    assert killed.info.status == "RUNNING"  # nothing could end it
    out, _ = run_here(tmp_path, *SMALL)
    assert f"run {killed.info.run_id} was left RUNNING by a process that is gone; marked KILLED" in out
    _, runs = logged_runs(tmp_path)
    assert runs[0].info.status == "KILLED" and runs[1].info.status == "FINISHED"
    assert not list((tmp_path / "cache").glob(".tmp-*"))
