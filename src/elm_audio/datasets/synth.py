"""The built-in dataset: short synthetic clips whose classes differ in rhythm and in timbre.

Three rhythms (straight beats, syncopated beats, a waltz) times two timbres (a pitched
harmonic tone, a band of noise) give six classes. Front-ends sensitive to timbre (vertical
filters, MFCCs) and to rhythm (temporal filters, deep stacks) separate different pairs of
classes, so architectures do differ on it. Clips are written once as WAV files at 22,050 Hz
(so decoding and resampling are exercised) and then read like any ``folder`` dataset.

``kind`` gives the other task kinds, ``clips_per_class`` x 6 clips each, written with a
``manifest.csv`` and read like any ``table`` dataset (stratified k-fold):

- ``multilabel``: which of four sources sound in a clip (``SOURCES``: a sustained harmonic tone,
  bursts of a high noise band, a train of broadband clicks, a low hum); every non-empty
  combination in turn, so each source is in about half the clips.
- ``regression``: the tempo in beats per minute (60 to 180) of a beat of short events (one
  timbre a clip, random gains); faster beats put more events in a clip.

``kind=multiclass`` (the default) writes exactly what it always did, in the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from filelock import FileLock
from scipy.signal import butter, sosfilt

from ..stores.shared_files import file_mode, make_folder, share
from .folder import Folder
from .index import TASK_KINDS, DatasetError, Survey
from .table import Table

SYNTH_RATE = 22_050
SYNTH_VERSION = 1
# onsets as fractions of a bar, and bar length in beats
RHYTHMS = {
    "straight": ((0.0, 0.25, 0.5, 0.75), 4),
    "syncopated": ((0.0, 0.375, 0.5, 0.875), 4),
    "waltz": ((0.0, 1 / 3, 2 / 3), 3),
}
TIMBRES = ("tone", "noise")
SOURCES = ("tone", "noise", "clicks", "hum")  # kind=multilabel: the tags
TEMPO_RANGE = (60.0, 180.0)  # kind=regression: the target, beats per minute
CLIPS_PER_KIND = len(RHYTHMS) * len(TIMBRES)  # clips_per_class x this many clips, whatever the kind


def _event(timbre: str, rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    if timbre == "tone":
        f0 = rng.uniform(180.0, 700.0)
        wave = sum((0.6**h) * np.sin(2 * np.pi * f0 * (h + 1) * t + rng.uniform(0, 2 * np.pi)) for h in range(5))
        envelope = np.exp(-t / rng.uniform(0.06, 0.12))
    else:
        centre = rng.uniform(1500.0, 4000.0)
        sos = butter(4, [centre / 1.5, min(centre * 1.5, sr / 2 - 1)], btype="band", fs=sr, output="sos")
        wave = sosfilt(sos, rng.standard_normal(n)) * 4.0
        envelope = np.exp(-t / rng.uniform(0.02, 0.05))
    return wave * envelope


def synth_clip(rhythm: str, timbre: str, seed: int, duration: float, sr: int = SYNTH_RATE) -> np.ndarray:
    """One clip: events of ``timbre`` at the onsets of ``rhythm``, with jittered tempo and
    phase, random gain, and background noise."""
    rng = np.random.default_rng(seed)
    onsets, beats = RHYTHMS[rhythm]
    bpm = rng.uniform(100.0, 140.0)
    bar = beats * 60.0 / bpm
    out = 0.01 * rng.standard_normal(int(duration * sr))
    start = rng.uniform(0.0, bar)
    while start < duration:
        for frac in onsets:
            at = int((start + frac * bar + rng.normal(0.0, 0.005)) * sr)
            if 0 <= at < len(out):
                event = _event(timbre, rng, sr) * rng.uniform(0.5, 1.0)
                end = min(len(out), at + len(event))
                out[at:end] += event[: end - at]
        start += bar
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def _source(source: str, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """One source of a multilabel clip, ``n`` samples long, peak about 1."""
    t = np.arange(n) / sr
    if source == "tone":  # sustained harmonic tone, a few notes
        out = np.zeros(n)
        edges = np.linspace(0, n, int(rng.integers(2, 5)) + 1).astype(int)
        for a, b in zip(edges[:-1], edges[1:]):
            f0 = rng.uniform(220.0, 660.0)
            out[a:b] = sum((0.6**h) * np.sin(2 * np.pi * f0 * (h + 1) * t[a:b]) for h in range(4))
        return out / 2.0
    if source == "noise":  # bursts of a noise band between 2 and 5 kHz
        sos = butter(4, [2000.0, 5000.0], btype="band", fs=sr, output="sos")
        band = sosfilt(sos, rng.standard_normal(n)) * 3.0
        gate = np.zeros(n)
        at = 0
        while at < n:
            length = int(rng.uniform(0.1, 0.3) * sr)
            gate[at : at + length] = 1.0
            at += length + int(rng.uniform(0.1, 0.4) * sr)
        return band * gate
    if source == "clicks":  # broadband clicks, 4 to 8 a second
        out = np.zeros(n)
        period = int(sr / rng.uniform(4.0, 8.0))
        click = np.exp(-np.arange(int(0.004 * sr)) / (0.001 * sr)) * rng.choice([-1.0, 1.0], int(0.004 * sr))
        for at in range(int(rng.integers(0, period)), n - len(click), period):
            out[at : at + len(click)] += click
        return out
    f = rng.uniform(60.0, 140.0)  # hum: a low sine and its second harmonic
    return np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)


def multilabel_clip(present: tuple[str, ...], seed: int, duration: float, sr: int = SYNTH_RATE) -> np.ndarray:
    """The sources ``present``, each at a random gain, over background noise."""
    rng = np.random.default_rng(seed)
    n = int(duration * sr)
    out = 0.01 * rng.standard_normal(n)
    for source in SOURCES:  # every source draws its numbers, present or not: a clip's sources are independent
        wave = _source(source, rng, n, sr) * rng.uniform(0.5, 1.0)
        if source in present:
            out += wave
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def tempo_clip(bpm: float, seed: int, duration: float, sr: int = SYNTH_RATE) -> np.ndarray:
    """Events of one timbre on every beat at ``bpm``, random phase and gains, over background noise."""
    rng = np.random.default_rng(seed)
    timbre = TIMBRES[int(rng.integers(len(TIMBRES)))]
    out = 0.01 * rng.standard_normal(int(duration * sr))
    beat = 60.0 / bpm
    start = rng.uniform(0.0, beat)
    while start < duration:
        at = int((start + rng.normal(0.0, 0.003)) * sr)
        if 0 <= at < len(out):
            event = _event(timbre, rng, sr) * rng.uniform(0.7, 1.0)
            end = min(len(out), at + len(event))
            out[at:end] += event[: end - at]
        start += beat
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def source_sets(n: int) -> list[tuple[str, ...]]:
    """The sources of clip 0 .. n-1: the non-empty combinations of SOURCES in turn."""
    combos = [tuple(s for b, s in enumerate(SOURCES) if m >> b & 1) for m in range(1, 2 ** len(SOURCES))]
    return [combos[i % len(combos)] for i in range(n)]


class Synth(Folder):
    """Generated on first use under ``root``; afterwards a plain folder dataset, split by
    stratified k-fold."""

    def __init__(
        self,
        root: str,
        name: str = "synth",
        clips_per_class: int = 30,
        duration: float = 6.0,
        seed: int = 0,
        n_folds: int = 5,
        fold_seed: int = 0,
        on_bad_clip: str = "error",
        group: str | None = None,
        kind: str = "multiclass",
    ):
        if kind not in TASK_KINDS:
            raise DatasetError(f"dataset.kind={kind!r} is not one of {', '.join(TASK_KINDS)}")
        self.kind = str(kind)
        self.settings = {
            "clips_per_class": int(clips_per_class),
            "duration": float(duration),
            "seed": int(seed),
            "version": SYNTH_VERSION,
        }
        if self.kind != "multiclass":  # multiclass keeps its settings, so its folder, as they always were
            self.settings["kind"] = self.kind
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:12]
        self.base = Path(str(root)).expanduser()
        super().__init__(
            str(self.base / digest), name=name, n_folds=n_folds, fold_seed=fold_seed, on_bad_clip=on_bad_clip, group=group
        )

    def generate(self) -> Path:
        """Write the clips once; concurrent runs wait for the first, and an interrupted
        generation leaves only a temporary folder that the next run ignores."""
        target = Path(self.root)
        if target.is_dir():
            return target
        make_folder(self.base, writable_by_group=True)
        with FileLock(str(target) + ".lock", mode=file_mode(writable_by_group=True)):
            if target.is_dir():
                return target
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.base))
            try:
                if self.kind != "multiclass":
                    self._write_table(tmp, target)
                    (tmp / "settings.json").write_text(json.dumps(self.settings, indent=2))
                    share(tmp)
                    os.replace(tmp, target)
                    return target
                n = self.settings["clips_per_class"]
                print(
                    f"synth: generating the built-in dataset once, {n * len(RHYTHMS) * len(TIMBRES)} clips of "
                    f"{self.settings['duration']:g} s, under {target}",
                    flush=True,
                )
                for r, rhythm in enumerate(RHYTHMS):
                    for t, timbre in enumerate(TIMBRES):
                        folder = tmp / f"{rhythm}_{timbre}"
                        folder.mkdir()
                        for i in range(n):
                            seed = self.settings["seed"] * 1_000_003 + (r * len(TIMBRES) + t) * 10_007 + i
                            clip = synth_clip(rhythm, timbre, seed, self.settings["duration"])
                            sf.write(folder / f"{rhythm}_{timbre}.{i:03d}.wav", clip, SYNTH_RATE, subtype="PCM_16")
                (tmp / "settings.json").write_text(json.dumps(self.settings, indent=2))
                share(tmp)  # mkdtemp made it private: the group's runs read it too
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _write_table(self, tmp: Path, target: Path) -> None:
        """kind=multilabel or regression: clips/<kind>.NNN.wav and manifest.csv (path, labels or target)."""
        n = self.settings["clips_per_class"] * CLIPS_PER_KIND
        duration = self.settings["duration"]
        what = "sources present" if self.kind == "multilabel" else "tempo"
        print(
            f"synth: generating the built-in {self.kind} dataset ({what}) once, {n} clips of {duration:g} s, under {target}",
            flush=True,
        )
        (tmp / "clips").mkdir()
        rows = []
        base_seed = self.settings["seed"] * 1_000_003 + (7 if self.kind == "multilabel" else 11) * 100_003
        if self.kind == "multilabel":
            for i, present in enumerate(source_sets(n)):
                name = f"clips/multilabel.{i:04d}.wav"
                sf.write(tmp / name, multilabel_clip(present, base_seed + i, duration), SYNTH_RATE, subtype="PCM_16")
                rows.append(f"{name},{';'.join(present)}")
            header = "path,labels"
        else:
            low, high = TEMPO_RANGE
            tempos = np.random.default_rng(base_seed).permutation(np.linspace(low, high, n))
            for i, bpm in enumerate(tempos):
                bpm = round(float(bpm), 2)
                name = f"clips/regression.{i:04d}.wav"
                sf.write(tmp / name, tempo_clip(bpm, base_seed + i, duration), SYNTH_RATE, subtype="PCM_16")
                rows.append(f"{name},{bpm!r}")
            header = "path,target"
        (tmp / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")

    def survey(self, mode: str = "honest") -> Survey:
        self.generate()
        if self.kind == "multiclass":
            return super().survey(mode)
        table = Table(self.root, "manifest.csv", name=self.name, n_folds=self.n_folds, fold_seed=self.fold_seed,
                      on_bad_clip=self.on_bad_clip, group=self.group)
        return table.survey(mode)
