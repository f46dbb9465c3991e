"""Extractions that resume and share the work (chunks.py): a real SIGKILL mid-extraction, then a
resume that computes only the missing chunks and assembles the uninterrupted matrix bit for bit;
two real processes sharing one key; torn, planted and flipped chunks, dead and stale claims, a
full disk mid-chunk, a group member resuming another's chunks; the extract-only command run twice
at once, as a SLURM array's tasks would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.audio import tone_folder
from helpers.users import ALICE, BOB, GROUP, as_user

from elm_audio.config import compose
from elm_audio.extraction import chunks as chunks_module
from elm_audio.extraction.chunks import ChunkedEntry, layout
from elm_audio.extraction.extract import extract
from elm_audio.run import features as features_module
from elm_audio.run.features import load_or_extract
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load
from elm_audio.stores.cache import CacheError, FeatureCache
from elm_audio.stores.processes import identity

KEY, OTHER = "0123456789abcdef0000", "0123456789abcdef0001"
N, WIDTH, BATCH = 24, 5, 2  # six chunks of four clips
IDS, LABELS = [f"c{i:02d}" for i in range(N)], ["x", "y"] * (N // 2)
BAD = 13  # a clip left out (its row NaN), as extract leaves an unreadable one under on_bad_clip=skip
EXPECTED = (np.arange(N * WIDTH, dtype=np.float32).reshape(N, WIDTH) / 7).astype(np.float32)
EXPECTED[BAD] = np.nan


def fake_fill(chunk, rows, advance, log: list | None = None) -> dict:
    """A chunk's rows without a front-end: EXPECTED's; the first clip of each chunk silent."""
    if log is not None:
        log.append(chunk.start)
    rows[:] = EXPECTED[chunk.start : chunk.stop]
    advance(len(chunk))
    bad = {IDS[BAD]: "unreadable"} if chunk.start <= BAD < chunk.stop else {}
    return {"bad_clips": bad, "silent_clips": [IDS[chunk.start]]}


def entry_of(root: Path, key: str = KEY) -> ChunkedEntry:
    return ChunkedEntry(FeatureCache(root), key, IDS, WIDTH, BATCH)


def partial(root: Path, key: str = KEY, batch: int = BATCH) -> Path:
    return root / f".chunks-{key}-b{batch}"


def gone_identity() -> dict:
    """The identity a real process had, read inside it; the process has ended since."""
    code = "import json; from elm_audio.stores.processes import identity; print(json.dumps(identity()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


# --- a real SIGKILL mid-extraction, then a resume ------------------------------------------------

DIE_IN_CHUNK = r"""
import os, signal, sys
from elm_audio.run import features
from elm_audio.stores.cache import FeatureCache
from elm_audio.config import compose
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load

real = features.extract

def extract_then_die(frontend, clips, out, *args, **kwargs):
    if clips[0].clip_id == sys.argv[1]:  # this chunk: half of it computed, then killed outright
        real(frontend, clips[:2], out[:2], *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(frontend, clips, out, *args, **kwargs)

features.extract = extract_then_die
settings = load(compose(sys.argv[2:]))
features.share_extraction(settings.extraction, settings.device, make_plan(settings), FeatureCache(settings.cache_dir))
"""


@pytest.fixture()
def folder_dataset(tmp_path: Path) -> list[str]:
    root = tone_folder(tmp_path / "clips", N // 2, sr=12_000, step=0.03)
    return ["dataset=folder", f"dataset.root={root}", "dataset.n_folds=3", "frontend=temporal", "feature_size=small",
            f"extract.batch_size={BATCH}", "extract.progress=false", "extract.num_workers=1", "device=cpu",
            f"cache.dir={tmp_path / 'cache'}"]  # fmt: skip


@pytest.mark.slow
def test_a_killed_extraction_resumes_from_its_complete_chunks_and_matches_an_uninterrupted_one(
    folder_dataset, tmp_path, monkeypatch
):
    settings = load(compose(folder_dataset))
    plan, cache = make_plan(settings), FeatureCache(tmp_path / "cache")
    clips, chunks = plan.index.clips, layout(N, BATCH)
    killed = subprocess.run([sys.executable, "-c", DIE_IN_CHUNK, clips[chunks[2].start].clip_id, *folder_dataset],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    entry = ChunkedEntry(cache, plan.key, [c.clip_id for c in clips], plan.profile["feature_dim"], BATCH)
    assert entry.complete() == chunks[:2]  # the chunk it died in reads as incomplete
    assert (partial(cache.root, plan.key) / f"{chunks[2].name}.claim").exists()  # a dead process's claim
    assert list(cache.root.glob(".tmp-*"))  # and its temporary folder

    computed: list[str] = []

    def spy(frontend, chunk_clips, *args, **kwargs):
        computed.append(chunk_clips[0].clip_id)
        return extract(frontend, chunk_clips, *args, **kwargs)

    monkeypatch.setattr(features_module, "extract", spy)
    with cache.lock(plan.key) as locked:
        resumed, assembled = load_or_extract(settings.extraction, settings.device, plan, cache, locked)
    assert assembled and computed == [clips[c.start].clip_id for c in chunks[2:]]  # the missing chunks only

    uninterrupted = np.zeros_like(resumed.matrix)  # one extraction over every clip, as before chunks
    extract(plan.frontend, clips, uninterrupted, torch.device("cpu"), settings.extraction)
    assert resumed.matrix.tobytes() == uninterrupted.tobytes()
    assert resumed.clip_ids == [c.clip_id for c in clips] and resumed.labels == [c.label for c in clips]
    assert not partial(cache.root, plan.key).exists() and not list(cache.root.glob(".tmp-*"))
    assert sorted(p.name for p in resumed.path.iterdir()) == ["features.npy", "meta.json"]


# --- two real processes sharing one key ----------------------------------------------------------

SHARE = r"""
import os, sys, time
from pathlib import Path
import numpy as np
from elm_audio.stores.cache import FeatureCache
from elm_audio.extraction.chunks import ChunkedEntry

root, marker = Path(sys.argv[1]), Path(sys.argv[2])
n, width, batch = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ids, labels = [f"c{i:02d}" for i in range(n)], ["x", "y"] * (n // 2)
expected = (np.arange(n * width, dtype=np.float32).reshape(n, width) / 7).astype(np.float32)
expected[int(sys.argv[6])] = np.nan
me = str(os.getpid())

def others() -> bool:
    return any(line.split()[0] != me for line in marker.read_text().splitlines())

def fill(chunk, rows, advance):
    mine = sum(line.split()[0] == me for line in marker.read_text().splitlines())
    with marker.open("a") as fh:
        fh.write(f"{me} {chunk.start}\n")
    deadline = time.time() + 30
    while mine and not others() and time.time() < deadline:  # a second chunk once the other process has one
        time.sleep(0.05)
    rows[:] = expected[chunk.start:chunk.stop]
    advance(len(chunk))
    return {"bad_clips": {}, "silent_clips": [ids[chunk.start]]}

(root.parent / f"ready-{me}").touch()
while len(list(root.parent.glob("ready-*"))) < 2:
    time.sleep(0.02)
cache = FeatureCache(root)
entry = ChunkedEntry(cache, "0123456789abcdef0000", ids, width, batch)
entry.share(fill, wait=True, progress=False)
with cache.lock(entry.key):
    features = entry.finish(fill, labels, progress=False)
np.save(root.parent / f"result-{me}.npy", features.matrix)
print(entry.computed)
"""


def test_two_processes_needing_one_key_share_its_chunks_and_agree_with_one(tmp_path):
    marker = tmp_path / "computed.txt"
    marker.touch()
    args = [str(tmp_path / "cache"), str(marker), *map(str, (N, WIDTH, BATCH, BAD))]
    procs = [subprocess.Popen([sys.executable, "-c", SHARE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    lines = [line.split() for line in marker.read_text().splitlines()]
    by_pid = {str(p.pid): sorted(int(s) for pid, s in lines if pid == str(p.pid)) for p in procs}
    assert all(by_pid.values()), by_pid  # each process computed some chunks
    assert sorted(int(s) for _, s in lines) == [c.start for c in layout(N, BATCH)]  # each chunk once
    assert [int(out) for out, _ in outs] == [len(by_pid[str(p.pid)]) for p in procs]
    results = [np.load(tmp_path / f"result-{p.pid}.npy") for p in procs]
    assert results[0].tobytes() == results[1].tobytes() == EXPECTED.tobytes()  # what one process computes
    assert not partial(tmp_path / "cache").exists()


# --- faults --------------------------------------------------------------------------------------


def test_torn_planted_and_flipped_chunks_are_named_and_recomputed(tmp_path):
    root = tmp_path / "cache"
    entry, other = entry_of(root), entry_of(root, OTHER)
    assert entry.share(fake_fill, wait=True, progress=False) and other.share(fake_fill, wait=True, progress=False)
    chunks = layout(N, BATCH)
    torn = partial(root) / f"{chunks[1].name}.npy"
    torn.write_bytes(torn.read_bytes()[:-7])  # cut short, as a kill or a hand would
    for suffix in ("npy", "json"):  # another key's chunk of the same range, copied in
        shutil.copyfile(partial(root, OTHER) / f"{chunks[2].name}.{suffix}", partial(root) / f"{chunks[2].name}.{suffix}")
    flipped = partial(root) / f"{chunks[4].name}.npy"
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0x01  # same size: only its checksum tells
    flipped.write_bytes(bytes(data))

    log: list[int] = []
    fresh = entry_of(root)
    assert fresh.share(lambda c, r, a: fake_fill(c, r, a, log), wait=True, progress=False)
    assert log == [chunks[1].start, chunks[2].start]
    assert "cut short" in fresh.cache.damaged[0] and "another key's" in fresh.cache.damaged[1]
    assert fresh.assemble(LABELS) is None and "checksum" in fresh.cache.damaged[2]  # never a wrong row
    with fresh.cache.lock(KEY):
        features = fresh.finish(lambda c, r, a: fake_fill(c, r, a, log), LABELS, progress=False)
    assert log == [chunks[1].start, chunks[2].start, chunks[4].start]
    assert features.matrix.tobytes() == EXPECTED.tobytes()
    assert features.silent_clips == [IDS[c.start] for c in chunks]  # merged in clip order
    assert features.bad_clips == {IDS[BAD]: "unreadable"} and not features.usable()[BAD]
    assert not partial(root).exists() and partial(root, OTHER).exists()


def test_processes_of_different_batch_sizes_keep_apart_and_the_first_to_finish_assembles(tmp_path):
    """A CPU job (batch 8 by default) and a GPU job (another batch size) needing one key: neither
    takes the other's chunks for damaged ones; the one that finishes first assembles the entry,
    the other then loads it, and no partial entry is left."""
    root = tmp_path / "cache"
    cpu, gpu = entry_of(root), ChunkedEntry(FeatureCache(root), KEY, IDS, WIDTH, 4)
    def one_chunk_then_stop(chunk, rows, advance):
        if chunk.start:
            raise KeyboardInterrupt
        return fake_fill(chunk, rows, advance)

    with pytest.raises(KeyboardInterrupt):  # the CPU job, stopped one chunk in
        cpu.share(one_chunk_then_stop, wait=True, progress=False)
    assert partial(root).is_dir()
    assert gpu.share(fake_fill, wait=True, progress=False)  # the GPU job computes all of its own
    with gpu.cache.lock(KEY):
        assert gpu.finish(fake_fill, LABELS, progress=False).matrix.tobytes() == EXPECTED.tobytes()
    log: list[int] = []
    with cpu.cache.lock(KEY):
        features = cpu.finish(lambda c, r, a: fake_fill(c, r, a, log), LABELS, progress=False)
    assert features.matrix.tobytes() == EXPECTED.tobytes() and log == []  # loaded, nothing computed
    assert not cpu.cache.damaged and not gpu.cache.damaged
    assert not list(root.glob(".chunks-*"))


def test_claims_of_dead_and_silent_jobs_are_taken_over_and_live_ones_waited_for(tmp_path):
    root = tmp_path / "cache"
    entry = entry_of(root)
    partial(root).mkdir(parents=True)
    chunks = layout(N, BATCH)
    elsewhere = {**identity(), "host": "another-node", "boot_id": "another-boot"}  # cannot be proven gone from here
    claims = {name: partial(root) / f"{chunks[i].name}.claim" for i, name in enumerate(("dead", "silent", "live", "junk"))}
    claims["dead"].write_text(json.dumps(gone_identity()))
    claims["silent"].write_text(json.dumps(elsewhere))
    stale = time.time() - chunks_module.STALE_SECONDS - 60
    os.utime(claims["silent"], (stale, stale))  # its job stopped refreshing it long ago
    claims["live"].write_text(json.dumps(elsewhere))
    claims["junk"].symlink_to(tmp_path / "nowhere")  # planted: no identity in it

    log: list[int] = []
    assert not entry.share(lambda c, r, a: fake_fill(c, r, a, log), wait=False, progress=False)
    assert sorted(log) == sorted(c.start for i, c in enumerate(chunks) if i != 2)  # all but the live claim's
    assert claims["live"].exists() and not [p for p in partial(root).glob("*.claim") if p != claims["live"]]

    threading.Timer(0.5, claims["live"].unlink).start()  # its job finishes without it: the waiting process takes it
    assert entry.share(lambda c, r, a: fake_fill(c, r, a, log), wait=True, progress=False)
    assert log[-1] == chunks[2].start and entry.computed == len(chunks)


def test_the_chunk_guessed_next_is_the_one_computed_next(tmp_path):
    """While a chunk computes, its clips' successor is guessed (its decoding starts then,
    extract.Decoder): the next chunk with neither a claim nor a record, which is the one this
    process goes on to compute where no other takes it meanwhile."""
    root = tmp_path / "cache"
    entry = entry_of(root)
    partial(root).mkdir(parents=True)
    chunks = layout(N, BATCH)
    elsewhere = {**identity(), "host": "another-node", "boot_id": "another-boot"}
    claims = [partial(root) / f"{c.name}.claim" for c in chunks]
    for i, claim in enumerate(claims):
        if i != 1:
            claim.write_text(json.dumps(elsewhere))
    entry.share(fake_fill, wait=False, progress=False)  # chunk 1 complete, the others claimed elsewhere
    for i, claim in enumerate(claims):
        if i not in (1, 3):
            claim.unlink()

    computed, guessed = [], []

    def fill(chunk, rows, advance):
        computed.append(chunk.start)
        guess = entry.likely_next(chunk)
        guessed.append(None if guess is None else guess.start)
        return fake_fill(chunk, rows, advance)

    assert not entry.share(fill, wait=False, progress=False)  # chunk 3's claim is live elsewhere
    assert computed == [chunks[i].start for i in (0, 2, 4, 5)]
    assert guessed == [*computed[1:], None]


@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
def test_a_full_disk_mid_chunk_is_one_line_and_leaves_no_chunk_that_reads_as_complete(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        chunks = layout(N, BATCH)

        def fill_the_disk_in_chunk_2(chunk, rows, advance):
            if chunk == chunks[2]:  # its rows are allocated: a colleague fills the disk meanwhile
                with (disk / "filler").open("wb") as fh, pytest.raises(OSError):
                    while True:
                        fh.write(b"\0" * 4096)
                        fh.flush()
            return fake_fill(chunk, rows, advance)

        entry = entry_of(disk / "cache")
        with pytest.raises(CacheError) as err:
            entry.share(fill_the_disk_in_chunk_2, wait=True, progress=False)
        assert str(err.value).startswith(f"cache.dir={disk / 'cache'}: the disk is full") and "\n" not in str(err.value)
        assert entry.complete() == chunks[:2] and not (partial(disk / "cache") / f"{chunks[2].name}.json").exists()
        assert not list((disk / "cache").glob(".tmp-*")) and not list(partial(disk / "cache").glob("*.claim"))

        (disk / "filler").unlink()  # space freed: the next run goes on from chunk 2
        log: list[int] = []
        again = entry_of(disk / "cache")
        with again.cache.lock(KEY):
            features = again.finish(lambda c, r, a: fake_fill(c, r, a, log), LABELS, progress=False)
        assert log == [c.start for c in chunks[2:]] and features.matrix.tobytes() == EXPECTED.tobytes()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_progress_counts_the_chunks_done_before_a_resume(tmp_path, capsys):
    root = tmp_path / "cache"

    def interrupted_in_chunk_2(chunk, rows, advance):
        if chunk.start == layout(N, BATCH)[2].start:
            raise KeyboardInterrupt
        return fake_fill(chunk, rows, advance)

    with pytest.raises(KeyboardInterrupt):
        entry_of(root).share(interrupted_in_chunk_2, wait=True, progress=False)
    entry_of(root).share(fake_fill, wait=True, progress=True)
    shown = [line for line in capsys.readouterr().err.split("\r") if line.strip()]
    assert " 8/24 [" in shown[0]  # it starts from the clips the interrupted run completed
    assert "chunks 2/6" in shown[1] and "24/24" in shown[-1] and "chunks 6/6" in shown[-1] and "clip/s" in shown[-1]


def test_a_group_member_resumes_and_assembles_the_chunks_another_left_whatever_their_umasks(tmp_path):
    """Alice's extraction stops after two chunks; Bob, with a umask that shares nothing, computes
    the rest in the same partial entry, assembles the entry and removes Alice's chunks."""
    if os.geteuid() != 0:
        pytest.skip("two users of one group: needs root to become them")
    shared = Path(tempfile.mkdtemp(prefix="elm_audio-group-"))  # pytest's own folders are root's alone
    os.chown(shared, 0, GROUP)
    shared.chmod(0o2770)
    try:
        chunks = layout(N, BATCH)

        def alice() -> list:
            def stopped_in_chunk_2(chunk, rows, advance):
                if chunk == chunks[2]:
                    raise KeyboardInterrupt
                return fake_fill(chunk, rows, advance)

            entry = entry_of(shared / "cache")
            try:
                entry.share(stopped_in_chunk_2, wait=True, progress=False)
            except KeyboardInterrupt:
                pass
            return [c.start for c in entry.complete()]

        def bob() -> list:
            log: list[int] = []
            entry = entry_of(shared / "cache")
            with entry.cache.lock(KEY):
                features = entry.finish(lambda c, r, a: fake_fill(c, r, a, log), LABELS, progress=False)
            return [log, features.matrix.tobytes() == EXPECTED.tobytes(), entry.folder.exists()]

        assert as_user(ALICE, 0o077, alice) == {"ok": [c.start for c in chunks[:2]]}
        assert as_user(BOB, 0o077, bob) == {"ok": [[c.start for c in chunks[2:]], True, False]}
    finally:
        shutil.rmtree(shared)


# --- the extract-only command, as a SLURM array's tasks run it -----------------------------------


@pytest.mark.slow
def test_two_extract_only_commands_at_once_fill_the_cache_for_every_front_end(folder_dataset, tmp_path):
    args = [a for a in folder_dataset if not a.startswith(("frontend=", "feature_size="))] + ["frontend=mfcc,temporal"]
    procs = [subprocess.Popen([sys.executable, "-m", "elm_audio.extract_only", *args], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    for out, _ in outs:
        assert [line.split(":")[0] for line in out.splitlines()] == ["mfcc small", "temporal small"]
    cache = FeatureCache(tmp_path / "cache")
    for frontend in ("mfcc", "temporal"):
        cfg = compose([*folder_dataset, f"frontend={frontend}"])
        assert cache.load(make_plan(load(cfg)).key) is not None
    assert not list(cache.root.glob(".chunks-*")) and not list(cache.root.glob(".tmp-*"))
