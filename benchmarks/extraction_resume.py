"""Resumable and shared extraction (elm_audio/chunks.py), measured with real processes.

    python benchmarks/extraction_resume.py [--clips 2560] [--frontend temporal] [--folder DIR]

On a generated folder dataset (1-s clips, two classes), each extraction runs in a process of
its own with one torch thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)), timed from the
moment it starts extracting (after its imports and plan) until the entry is assembled:

- an uninterrupted extraction;
- an extraction killed (SIGKILL) once 50%, then 90%, of its chunks are complete, and the time
  the same command then takes to finish (target: at most the remaining share plus 10% of the
  uninterrupted time);
- two processes sharing one key, started together, against one (target: 1.6x or better on
  two cores), in alternating rounds (the median speedup: a shared machine's load moves).

Prints the figures, wall-clock and CPU seconds (the CPU time of a process, its decoding
thread's included, shows the work done whatever else runs on the machine); every assembled
matrix is compared with the uninterrupted one (SHA-256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_clips(root: Path, n: int) -> None:
    """``n`` 1-s clips at 12 kHz (the front-ends' rate: nothing to resample), two classes."""
    import numpy as np
    import soundfile as sf

    for i in range(n):
        label, base = ("low", 220.0) if i % 2 else ("high", 1760.0)
        path = root / label / f"{label}_{i:05d}.wav"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(12_000) / 12_000
        noise = np.random.default_rng(i).standard_normal(len(t))
        sf.write(path, (0.4 * np.sin(2 * np.pi * base * (1 + (i % 50) / 100) * t) + 0.01 * noise).astype(np.float32), 12_000)


def overrides(folder: Path, cache: Path, frontend: str) -> list[str]:
    return ["dataset=folder", f"dataset.root={folder}", "dataset.n_folds=3", f"frontend={frontend}",
            "feature_size=small", "extract.progress=false", "device=cpu", f"cache.dir={cache}"]  # fmt: skip


def child(go: Path, args: list[str]) -> None:
    """One extraction: plan, say ready, wait for ``go`` to exist, extract (sharing the chunks),
    assemble or load; print what it took."""
    import torch

    torch.set_num_threads(1)
    from elm_audio.config import compose
    from elm_audio.run.features import load_or_extract, share_extraction
    from elm_audio.run.plan import make_plan
    from elm_audio.settings.settings import load
    from elm_audio.stores.cache import FeatureCache

    settings = load(compose(args))
    plan, cache = make_plan(settings), FeatureCache(settings.cache_dir)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    start, cpu = time.perf_counter(), time.process_time()
    computed = share_extraction(settings.extraction, settings.device, plan, cache)
    with cache.lock(plan.key) as locked:
        features, assembled = load_or_extract(settings.extraction, settings.device, plan, cache, locked)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    digest = hashlib.sha256(features.matrix.tobytes()).hexdigest()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "computed": computed, "assembled": assembled, "sha256": digest}),
          flush=True)  # fmt: skip


class Child:
    """A child process extracting into ``cache``, started at once, extracting once ``go`` exists."""

    def __init__(self, cache: Path, go: Path, args: list[str]):
        env = {**os.environ, **THREADS}
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", str(go), *overrides_for(args, cache)],
                                     stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the extraction did not start: {self.proc.communicate()}")

    def result(self) -> dict:
        out, _ = self.proc.communicate(timeout=3600)
        if self.proc.returncode:
            raise SystemExit(f"the extraction failed ({self.proc.returncode}): {out}")
        return json.loads(out.strip().splitlines()[-1])


def overrides_for(args: list[str], cache: Path) -> list[str]:
    return [a for a in args if not a.startswith("cache.dir=")] + [f"cache.dir={cache}"]


def complete_chunks(cache: Path) -> int:
    return len(list(cache.glob(".chunks-*/chunk-*.json")))


def run(work: Path, name: str, args: list[str], processes: int = 1, kill_after: int | None = None) -> list[dict]:
    """``processes`` extractions into the cache ``work/name``, started together; with
    ``kill_after``, the first is killed outright once that many chunks are complete."""
    cache, go = work / name, work / f"{name}.go"
    started = [Child(cache, go, args) for _ in range(processes)]
    go.touch()
    if kill_after is None:
        return [e.result() for e in started]
    while complete_chunks(cache) < kill_after:
        if started[0].proc.poll() is not None:
            raise SystemExit("the extraction ended before it could be killed: use more clips")
        time.sleep(0.01)
    started[0].proc.send_signal(signal.SIGKILL)
    started[0].proc.wait()
    return []


def one_then_two(work: Path, base: list[str], i: int, n_clips: int) -> tuple[dict, list[dict]]:
    """A round: one process alone, then two sharing one key, in turn so that both see the same
    machine; prints the round's figures."""
    one, two = run(work, f"whole-{i}", base)[0], run(work, f"shared-{i}", base, processes=2)
    wall = max(r["seconds"] for r in two)
    print(f"round {i}: one process {one['seconds']:.1f} s ({n_clips / one['seconds']:.1f} clips/s, {one['cpu']:.1f} s CPU); "
          f"two sharing one key {wall:.1f} s ({one['seconds'] / wall:.2f}x; {sum(r['cpu'] for r in two) / one['cpu']:.2f}x "
          f"the CPU time together; chunks computed {' + '.join(str(r['computed']) for r in two)})", flush=True)  # fmt: skip
    return one, two


def killed_then_resumed(work: Path, base: list[str], share: float, n_chunks: int, whole: dict) -> dict:
    """An extraction killed once ``share`` of its chunks are complete, then the same extraction
    again; prints the resume's time against ``whole``'s (an uninterrupted one)."""
    name, done = f"killed-{int(share * 100)}", round(share * n_chunks)
    run(work, name, base, kill_after=done)
    resumed = run(work, name, base)[0]
    left = 1 - done / n_chunks
    ratio, cpu = resumed["seconds"] / whole["seconds"], resumed["cpu"] / whole["cpu"]
    print(f"killed at {done}/{n_chunks} chunks: the resume computed {resumed['computed']} chunks in "
          f"{resumed['seconds']:.1f} s = {ratio:.2f} of round 1's uninterrupted time, {cpu:.2f} of its CPU time "
          f"(share left {left:.2f}, target <= {left + 0.1:.2f}: {'met' if ratio <= left + 0.1 else 'missed'})",
          flush=True)  # fmt: skip
    return resumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=2560, help="2,304 to 2,560 make ten chunks of 256 clips")
    parser.add_argument("--frontend", default="temporal")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of one process, then two sharing one key")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/elm_audio_resume_benchmark"))
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child[0]), args.child[1:])

    from elm_audio.extraction.chunks import layout

    clips, work = args.folder / "clips", args.folder / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    make_clips(clips, args.clips)
    work.mkdir(parents=True)
    base = overrides(clips, work / "cache", args.frontend)  # each run names a cache of its own
    n_chunks = len(layout(args.clips, 8))  # extract.batch_size's default
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
          f"{args.clips} clips, {args.frontend} small, {n_chunks} chunks; one torch thread per process", flush=True)  # fmt: skip
    rounds = [one_then_two(work, base, 1, args.clips)]
    resumed = [killed_then_resumed(work, base, share, n_chunks, rounds[0][0]) for share in (0.5, 0.9)]
    rounds += [one_then_two(work, base, i, args.clips) for i in range(2, args.rounds + 1)]
    speedup = statistics.median(one["seconds"] / max(r["seconds"] for r in two) for one, two in rounds)
    matrices = {r["sha256"] for r in [*resumed, *(one for one, _ in rounds), *(r for _, two in rounds for r in two)]}
    print(f"two processes sharing one key: {speedup:.2f}x one process, the median of {args.rounds} rounds (target >= 1.6: "
          f"{'met' if speedup >= 1.6 else 'missed'}); every matrix the same, bit for bit: {len(matrices) == 1}; "
          f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)  # fmt: skip

if __name__ == "__main__":
    main()
