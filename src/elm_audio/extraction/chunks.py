"""Resumable, shared extraction: a cache entry's rows computed in chunks of consecutive clips.

A chunk is a fixed number of consecutive clips, a multiple of the batch size: inside it the
batches are those of one extraction over every clip, so the assembled matrix is that
extraction's bit for bit, however often it was interrupted and whoever computed each chunk.
The complete chunks of a key wait in its partial entry of their batch size,
``<root>/.chunks-<key>-b<batch size>/``:

    chunk-000000000-000000256.npy    the rows (float32 .npy)
    chunk-000000000-000000256.json   its record, renamed into place last: the key, the range,
                                     the batch size, the clip ids, the clips left out and the
                                     silent ones, the seconds it took, the .npy's size and SHA-256
    chunk-000000256-000000512.claim  the identity of the process computing that chunk

A chunk is computed in a temporary folder of the cache (``.tmp-<key>-...``, holding its owner's
identity like a whole entry's: the next extraction removes it once its owner is proven gone),
its rows allocated in full first (a full disk is one CacheError), then renamed in. It is
complete only when its record names this key, this range, this batch size and these clips, and
its .npy is of the recorded size (checked on every scan) and SHA-256 (checked on assembly): a
chunk torn by a kill, cut by hand, or another key's, range's or batch size's planted in the
folder is named and computed again.

Processes extracting one key with different batch sizes (``extract.batch_size=auto`` gives a CPU
job 8 and a GPU job what its memory allows) keep apart: each batch size's chunks wait in their
own folder, so neither takes the other's chunks for damaged ones; the first to finish assembles
the entry, and the others stop when they see it (their folders are removed as they finish).

Claims share the work: a process computes a chunk only after creating its claim exclusively (a
link to a file already holding its identity, so a claim is never read half-written), refreshed
every BEAT_SECONDS while it computes. A claim is taken over when its owner is proven gone
(processes.proven_gone), holds no identity (planted or damaged), or was not refreshed for
STALE_SECONDS (a job on another machine that died: its pid cannot be looked up from here).
Processes that find every missing chunk claimed by live owners poll until they are complete.
Then one process, holding the key's lock, assembles the entry as the cache has always written
it (features.npy and meta.json, renamed into place) and removes the partial entry.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm  # not tqdm.auto: no widget warning where a notebook imports it

from ..stores.cache import (
    OWNER,
    READ_ONLY,
    CacheError,
    FeatureCache,
    Features,
    allocate,
    file_sha256,
    npy_header,
    set_aside,
)
from ..stores.processes import identity, proven_gone
from ..stores.shared_files import (
    TMP_PREFIX,
    file_mode,
    folder_mode,
    is_real_folder,
    make_folder,
    open_regular,
    read_regular,
    share,
)

CHUNK_CLIPS = 256  # clips per chunk, at most (a chunk is never less than one batch)
MIN_CHUNKS = 8  # a small dataset is still cut into about this many chunks, to resume and share
PREFIX = ".chunks-"
POLL_SECONDS = 0.5  # how often a process waiting for others' chunks looks again
BEAT_SECONDS = 30.0  # how often a claim is refreshed while its chunk is computed
STALE_SECONDS = 600.0  # a claim not refreshed for this long is abandoned
ATTEMPTS = 3  # assemblies tried before chunks that keep failing their checks are blamed on the disk

# fill(chunk, rows, advance): writes the chunk's rows, calls advance(n) as n clips are done,
# returns {"bad_clips": {id: why}, "silent_clips": [ids]}
Fill = Callable[["Chunk", np.ndarray, Callable[[int], Any]], dict[str, Any]]


@dataclass(frozen=True)
class Chunk:
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"chunk-{self.start:09d}-{self.stop:09d}"


def layout(n_clips: int, batch_size: int) -> list[Chunk]:
    """The chunks of ``n_clips``: whole batches each, about a MIN_CHUNKS-th of the clips, at
    most CHUNK_CLIPS clips (or one batch, where a batch is larger)."""
    batches = max(1, min(CHUNK_CLIPS // batch_size, -(-n_clips // (MIN_CHUNKS * batch_size))))
    size = batches * batch_size
    return [Chunk(start, min(start + size, n_clips)) for start in range(0, n_clips, size)]


class DamagedChunk(ValueError):
    def __init__(self, chunk: Chunk, why: str):
        super().__init__(why)
        self.chunk = chunk


class Claim:
    """This process's claim on a chunk (the file at ``path``, inode ``inode``), refreshed every
    BEAT_SECONDS until it is released; a context manager."""

    def __init__(self, path: Path, inode: int):
        self.path, self.inode = path, inode
        self._released = threading.Event()
        self._beat = threading.Thread(target=self._refresh, name="elm_audio-claim", daemon=True)
        self._beat.start()

    def _mine(self) -> bool:
        try:
            return os.lstat(self.path).st_ino == self.inode
        except OSError:
            return False

    def _refresh(self) -> None:
        while not self._released.wait(BEAT_SECONDS):
            if self._mine():
                with contextlib.suppress(OSError):
                    os.utime(self.path, follow_symlinks=False)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self._released.set()
        self._beat.join()
        if self._mine():
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def create_claim(path: Path) -> int | None:
    """Claim ``path`` for this process: the new claim's inode, or None where a claim (or
    anything else) is there already, or the partial entry is gone (assembled meanwhile)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent)
    except FileNotFoundError:
        return None
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(identity()))
            os.fchmod(fh.fileno(), file_mode())
        os.link(tmp, path)  # exclusive, and the claim holds its identity from its first moment
        return os.lstat(tmp).st_ino
    except (FileExistsError, FileNotFoundError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def abandoned(path: Path) -> bool:
    """Whether the claim at ``path`` may be taken over: its owner proven gone, no identity in it
    (claims are written whole: it was planted or damaged), or not refreshed for STALE_SECONDS."""
    try:
        owner = json.loads(read_regular(path))
    except PermissionError:  # cannot be judged by its contents
        owner = {}
    except (OSError, ValueError):
        return os.path.lexists(path)
    if not isinstance(owner, dict):
        return True
    return proven_gone(owner) or time.time() - os.lstat(path).st_mtime > STALE_SECONDS


def move_aside(path: Path, inode: int) -> None:
    """Remove the abandoned claim ``path`` had (inode ``inode``); a claim that replaced it
    since it was judged is put back."""
    aside = path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if os.lstat(aside).st_ino != inode:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path, follow_symlinks=False)
    os.unlink(aside)


class ChunkedEntry:
    """The partial entry of ``key``: ``clip_ids``' rows of ``width`` float32 values, computed
    in chunks of whole batches of ``batch_size`` clips (see the module)."""

    def __init__(self, cache: FeatureCache, key: str, clip_ids: list[str], width: int, batch_size: int, label: str = ""):
        self.cache, self.key, self.clip_ids, self.width, self.label = cache, key, list(clip_ids), width, label
        self.batch_size = batch_size  # recorded: a chunk of other batches would not be the same bits
        self.folder = cache.entry(key).with_name(f"{PREFIX}{key}-b{batch_size}")
        self.chunks = layout(len(self.clip_ids), batch_size)
        self.computed = 0  # chunks this process computed

    def _path(self, chunk: Chunk, suffix: str) -> Path:
        return self.folder / f"{chunk.name}.{suffix}"

    def _bytes(self, n_rows: int) -> int:
        """What ``n_rows`` rows take on disk, in their chunk and again in the entry."""
        return 2 * n_rows * self.width * 4

    # --- what is complete ---------------------------------------------------------------------

    def _record(self, chunk: Chunk) -> dict[str, Any]:
        """The chunk's record, where it is this chunk's: ValueError where it is another's."""
        record = json.loads(read_regular(self._path(chunk, "json")))
        expected = {"key": self.key, "start": chunk.start, "stop": chunk.stop, "batch_size": self.batch_size,
                    "clip_ids": self.clip_ids[chunk.start : chunk.stop], "shape": [len(chunk), self.width],
                    "dtype": "float32"}  # fmt: skip
        if not isinstance(record, dict):
            raise ValueError("its record is not a JSON object")
        wrong = [k for k, v in expected.items() if record.get(k) != v]
        if wrong:
            raise ValueError(f"its record's {' and '.join(wrong)} are not this chunk's (another key's, range's or batch size's)")
        kinds = {"bad_clips": dict, "silent_clips": list, "extract_seconds": (int, float)}
        if not all(isinstance(record.get(k), kind) for k, kind in kinds.items()):
            raise ValueError(f"its record's {', '.join(kinds)} are not of their kinds")
        return record

    def _open_rows(self, chunk: Chunk, record: dict[str, Any]) -> BinaryIO:
        """The chunk's .npy opened, where it is a regular file of the size its record says."""
        fh = open_regular(self._path(chunk, "npy"))
        size = os.fstat(fh.fileno()).st_size
        if size != record.get("size"):
            fh.close()
            raise ValueError(f"its rows are {size} bytes, not the {record.get('size')} recorded (cut short, or changed)")
        return fh

    def _problem(self, chunk: Chunk) -> str | None:
        """Why the chunk is not complete (from its record and size; its digest is checked on
        assembly); None where it is."""
        try:
            with self._open_rows(chunk, self._record(chunk)):
                return None
        except FileNotFoundError:
            return "its rows or its record are missing"
        except (OSError, ValueError) as err:
            return str(err)

    def complete(self) -> list[Chunk]:
        return [chunk for chunk in self.chunks if self._problem(chunk) is None]

    def _verified_rows(self, chunk: Chunk) -> tuple[np.ndarray, dict[str, Any]]:
        """The chunk's rows and record, its rows checked against the SHA-256 recorded; DamagedChunk otherwise."""
        try:
            record = self._record(chunk)
            with self._open_rows(chunk, record) as fh:
                if hashlib.file_digest(fh, "sha256").hexdigest() != record.get("sha256"):
                    raise ValueError("its rows do not match their checksum (changed or damaged on disk)")
                fh.seek(0)
                shape, fortran, dtype = npy_header(fh)
                if list(shape) != record["shape"] or dtype != np.float32 or fortran:
                    raise ValueError(f"its rows are {dtype} {list(shape)}, its record says float32 {record['shape']}")
                rows = np.memmap(fh, dtype=dtype, mode="r", shape=shape, offset=fh.tell())
        except (OSError, ValueError) as err:
            raise DamagedChunk(chunk, str(err)) from None
        return rows, record

    def _discard(self, chunk: Chunk, why: str) -> None:
        """Remove what is there of a chunk that is not complete, saying why where it had a record."""
        if os.path.lexists(self._path(chunk, "json")):
            self.cache.damaged.append(f"chunk {self._path(chunk, 'npy')} is damaged ({why}); computing it again")
        for suffix in ("json", "npy"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(chunk, suffix))

    # --- computing ----------------------------------------------------------------------------

    def _prepare(self) -> bool:
        """Make the partial entry (a planted link or file there is set aside) and clean what
        killed extractions left; False where the cache cannot be written."""
        try:
            make_folder(self.cache.root, writable_by_group=True)
            if os.path.lexists(self.folder) and not is_real_folder(self.folder):
                self.cache.damaged.append(set_aside(self.folder, "not a folder of its own (a link, or a file)"))
            make_folder(self.folder, writable_by_group=True)
            self.cache.clean_stale()
        except OSError as err:
            if err.errno in READ_ONLY:
                return False
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise CacheError(f"cache.dir={self.cache.root}: cannot make {self.folder.name} there: "
                             f"{err.strerror or err}; check the disk") from None  # fmt: skip
        return True

    def _claim(self, chunk: Chunk) -> Claim | None:
        """This process's claim on ``chunk``, where no live process holds one (an abandoned
        claim is moved aside first)."""
        path = self._path(chunk, "claim")
        with contextlib.suppress(FileNotFoundError):  # no claim there, or released meanwhile
            judged = os.lstat(path).st_ino
            if not abandoned(path):
                return None
            move_aside(path, judged)
        inode = create_claim(path)
        return None if inode is None else Claim(path, inode)

    def likely_next(self, chunk: Chunk) -> Chunk | None:
        """The chunk this process will likely compute after ``chunk``, asked while computing it
        (its clips' decoding can then start): the first after it with neither a claim nor a
        record. A guess: another process may claim it first."""
        after = self.chunks[self.chunks.index(chunk) + 1 :]
        return next((c for c in after if not any(os.path.lexists(self._path(c, s)) for s in ("claim", "json"))), None)

    def _take(self, chunk: Chunk, fill: Fill, advance: Callable[[int], Any]) -> bool | None:
        """Compute ``chunk`` where no live process has claimed it: True where this process
        computed it, False where it was found complete once claimed, None where it is another's."""
        claim = self._claim(chunk)
        if claim is None:
            return None
        with claim:
            why = self._problem(chunk)
            if why is None:
                return False
            self._discard(chunk, why)
            self._write(chunk, fill, advance)
        self.computed += 1
        return True

    def _write(self, chunk: Chunk, fill: Fill, advance: Callable[[int], Any]) -> None:
        """Compute the chunk in a temporary folder of the cache's (its owner's identity in it),
        then rename its rows and, last, its record into the partial entry."""
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.key}-{chunk.start}-{os.getpid()}-", dir=self.cache.root))
        try:
            tmp.chmod(folder_mode(self.cache.root))  # the group may read whose it is (clean_stale), never write into it
            (tmp / OWNER).write_text(json.dumps(identity()))
            rows = np.lib.format.open_memmap(tmp / "rows.npy", mode="w+", dtype=np.float32, shape=(len(chunk), self.width))
            allocate(tmp / "rows.npy")
            start = time.perf_counter()
            found = fill(chunk, rows, advance)
            seconds = time.perf_counter() - start
            rows.flush()
            del rows
            record = {"key": self.key, "start": chunk.start, "stop": chunk.stop, "batch_size": self.batch_size,
                      "clip_ids": self.clip_ids[chunk.start : chunk.stop],
                      "bad_clips": found["bad_clips"], "silent_clips": found["silent_clips"], "extract_seconds": seconds,
                      "shape": [len(chunk), self.width], "dtype": "float32", "size": (tmp / "rows.npy").stat().st_size,
                      "sha256": file_sha256(tmp / "rows.npy")}  # fmt: skip
            (tmp / "record.json").write_text(json.dumps(record))
            share(tmp)
            with contextlib.suppress(FileNotFoundError):  # the partial entry, assembled by another process meanwhile
                os.replace(tmp / "rows.npy", self._path(chunk, "npy"))
                os.replace(tmp / "record.json", self._path(chunk, "json"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def share(self, fill: Fill, wait: bool, progress: bool = True) -> bool:
        """Compute the chunks no live process is computing, one at a time, until none is left;
        with ``wait``, then wait for the others' (polling). Whether nothing is left to compute:
        every chunk complete, or the entry assembled meanwhile; False also where the cache
        cannot be written. Progress: clips and chunks done (by any process, since the first
        run), clips/s and the time left."""
        with self.cache.writing(self._bytes(len(self.clip_ids))):
            if os.path.lexists(self.cache.entry(self.key)):
                return True
            if not self._prepare():
                return False
            done = set(self.complete())
            if len(done) == len(self.chunks):
                return True
            try:
                with tqdm(total=len(self.clip_ids), initial=sum(map(len, done)), desc=f"extracting {self.label or self.key}",
                          unit="clip", disable=not progress) as bar:  # fmt: skip
                    return self._share(fill, wait, done, bar)
            except BaseException:
                with contextlib.suppress(OSError):  # stopped before its first chunk (an unreadable clip): no trace
                    self.folder.rmdir()
                raise

    def _share(self, fill: Fill, wait: bool, done: set[Chunk], bar: tqdm) -> bool:
        counted = set(done)  # the chunks whose clips the bar has counted
        while not os.path.lexists(self.cache.entry(self.key)):
            done |= {c for c in self.chunks if c not in done and self._problem(c) is None}
            bar.update(sum(len(c) for c in done - counted))
            counted |= done
            todo = [c for c in self.chunks if c not in done]
            bar.set_postfix_str(f"chunks {len(done)}/{len(self.chunks)}")
            if not todo:
                return True
            if not self.folder.is_dir():  # removed by hand: start again
                return False
            for chunk in todo:
                taken = self._take(chunk, fill, bar.update)
                if taken is not None:
                    if taken:  # its clips were counted as they were computed
                        counted.add(chunk)
                    break
            else:
                if not wait:
                    return False
                bar.set_postfix_str(f"chunks {len(done)}/{len(self.chunks)}, waiting for {len(todo)} computed elsewhere")
                time.sleep(POLL_SECONDS)
        return True

    # --- assembling ---------------------------------------------------------------------------

    def finish(self, fill: Fill, labels: list[str], progress: bool = True) -> Features:
        """The entry, by a process holding the key's lock: what is left computed (and what other
        processes compute waited for), then assembled. A chunk that fails its checks at assembly
        is computed again; failing ATTEMPTS times, the disk is at fault: a CacheError."""
        for _ in range(ATTEMPTS):
            if self.share(fill, wait=True, progress=progress):
                features = self.cache.load(self.key, (self.clip_ids, labels)) or self.assemble(labels)
                if features is not None:
                    shutil.rmtree(self.folder, ignore_errors=True)  # what late processes computed, if anything
                    return features
        raise CacheError(
            f"cache.dir={self.cache.root}: the chunks of {self.key} failed their checks {ATTEMPTS} times right after "
            f"they were computed, or their folder was removed meanwhile ({'; '.join(self.cache.damaged[-2:])}); "
            "check the disk, or choose another cache.dir"
        )

    def assemble(self, labels: list[str]) -> Features | None:
        """The entry, made of the complete chunks (by a process holding the key's lock, once
        share says nothing is left) in the cache's usual layout; then the partial entry is
        removed. None where a chunk fails its checks: it is named in ``cache.damaged`` and
        removed, to be computed again."""
        try:
            features = self.cache.store(self.key, len(self.clip_ids), self.width, lambda rows: self._copy(rows, labels))
        except DamagedChunk as err:
            self._discard(err.chunk, str(err))
            return None
        shutil.rmtree(self.folder, ignore_errors=True)
        return features

    def _copy(self, out: np.ndarray, labels: list[str]) -> dict[str, Any]:
        """Every chunk's rows into the entry's matrix; its metadata, the chunks' merged."""
        meta: dict[str, Any] = {"clip_ids": self.clip_ids, "labels": list(labels), "bad_clips": {}, "silent_clips": [],
                                "extract_seconds": 0.0}  # fmt: skip
        for chunk in self.chunks:
            rows, record = self._verified_rows(chunk)
            out[chunk.start : chunk.stop] = rows
            meta["bad_clips"].update(record["bad_clips"])
            meta["silent_clips"] += record["silent_clips"]
            meta["extract_seconds"] += record["extract_seconds"]
        return meta
