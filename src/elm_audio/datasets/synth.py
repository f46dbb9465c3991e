"""The built-in dataset: short synthetic clips whose classes differ in rhythm and in timbre.

Three rhythms (straight beats, syncopated beats, a waltz) times two timbres (a pitched
harmonic tone, a band of noise) give six classes. Front-ends sensitive to timbre (vertical
filters, MFCCs) and to rhythm (temporal filters, deep stacks) separate different pairs of
classes, so architectures do differ on it. Clips are written once as WAV files at 22,050 Hz
(so decoding and resampling are exercised) and then read like any ``folder`` dataset.
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

from ..shared_files import file_mode, make_folder, share
from .index import Survey
from .folder import Folder

SYNTH_RATE = 22_050
SYNTH_VERSION = 1
# onsets as fractions of a bar, and bar length in beats
RHYTHMS = {
    "straight": ((0.0, 0.25, 0.5, 0.75), 4),
    "syncopated": ((0.0, 0.375, 0.5, 0.875), 4),
    "waltz": ((0.0, 1 / 3, 2 / 3), 3),
}
TIMBRES = ("tone", "noise")


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
    ):
        self.settings = {
            "clips_per_class": int(clips_per_class),
            "duration": float(duration),
            "seed": int(seed),
            "version": SYNTH_VERSION,
        }
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

    def survey(self, mode: str = "honest") -> Survey:
        self.generate()
        return super().survey(mode)
