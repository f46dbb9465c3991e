"""The commands have glibc's malloc keep freed memory for the next large block
(devices.keep_freed_memory): a block above 32 MB from the heap, not mapped anew at every
allocation, and kept once freed; the user's own MALLOC_* environment wins. Each case runs in a
fresh interpreter (the setting is the process's), reading glibc's own account (mallinfo2)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

MB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
BLOCK = 64 * MB  # above glibc's largest threshold for mapping a block on its own (32 MB)

pytestmark = pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc's malloc (2.33 or later) is what is tuned"
)

PROBE = f"""
import ctypes, json, sys
import numpy as np
from elm_audio.devices import give_back_memory, keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
def info():
    i = libc.mallinfo2()
    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1]) * {PAGE}
    return {{"heap": i.arena, "mapped": i.hblkhd, "free": i.fordblks, "resident": resident}}

kept = keep_freed_memory() if sys.argv[1] == "keep" else None
a = np.ones({BLOCK} // 4, np.float32)
allocated = info()
del a
freed = info()
b = np.ones({BLOCK} // 4, np.float32)
again = info()
del b
before = info()
give_back_memory()
print(json.dumps({{"kept": kept, "allocated": allocated, "freed": freed, "again": again, "before": before,
                  "given_back": info()}}))
"""


def probe(mode: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_large_block_comes_from_the_heap_and_is_reused_once_freed():
    mine = probe("keep")
    assert mine["kept"] is True
    assert mine["allocated"]["mapped"] < BLOCK <= mine["allocated"]["heap"]  # not a mapping of its own
    assert mine["freed"]["free"] >= BLOCK and mine["freed"]["heap"] == mine["allocated"]["heap"]  # kept, not trimmed
    assert mine["again"]["heap"] == mine["allocated"]["heap"]  # the next block reused it: the heap did not grow
    # as a run ends, the free heap goes back to the system (its pages, if not its addresses)
    assert mine["before"]["resident"] - mine["given_back"]["resident"] >= BLOCK * 3 // 4
    glibc = probe("plain")  # what the commands did before: a mapping per block, gone when freed
    assert glibc["allocated"]["mapped"] >= BLOCK and glibc["freed"]["mapped"] < BLOCK


def test_the_users_own_malloc_environment_wins():
    theirs = probe("keep", MALLOC_MMAP_MAX_="65536")  # glibc's default, set by hand: keep it
    assert theirs["kept"] is False
    assert theirs["allocated"]["mapped"] >= BLOCK


def test_a_run_keeps_freed_memory_while_it_works_and_gives_it_back_as_it_ends(tmp_path, monkeypatch):
    from helpers.runs import QUICK, run_here

    from elm_audio.run import runner

    calls: list[str] = []
    logged_run = runner._logged_run
    monkeypatch.setattr(runner, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(runner, "give_back_memory", lambda: calls.append("give back"))
    monkeypatch.setattr(runner, "_logged_run", lambda *a: calls.append("run") or logged_run(*a))
    run_here(tmp_path, "frontend=mfcc", *QUICK)
    assert calls == ["keep", "run", "give back"]
