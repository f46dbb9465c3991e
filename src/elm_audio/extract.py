"""Batched feature extraction: worker processes decode while the front-end computes."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm  # not tqdm.auto: no widget warning where a notebook imports it

from .audio import SILENCE, AudioError, load
from .config import ConfigError
from .datasets.index import BAD_CLIP_POLICIES, Clip
from .frontends import FrontEnd
from .frontends.imported import Embeddings
from .inputs import InputSettings, fit_decoded, network_inputs, samples_to_decode, too_short
from .precision import autocast, effective_precision, network_features


class ClipAudio(torch.utils.data.Dataset):
    """Decoded, resampled clips, fitted as the input stage says. A clip that fails to decode
    comes back as ``None`` with the reason, so the caller decides whether that stops the run."""

    def __init__(self, clips: Sequence[Clip], frontend: FrontEnd, settings: InputSettings):
        self.clips = list(clips)
        self.frontend = frontend
        self.settings = settings
        self.max_samples = samples_to_decode(frontend, settings)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str, bool]:
        """(position, fitted signal or None, why it is None, whether it is silent)."""
        try:
            signal = load(self.clips[i].path, self.frontend.sample_rate, max_samples=self.max_samples)
        except AudioError as err:
            return i, None, err.reason, False
        short = too_short(len(signal), self.frontend, self.settings)
        if short:
            return i, None, short, False
        return i, fit_decoded(signal, self.frontend, self.settings), "", float(np.abs(signal).max()) < SILENCE


def _quiet_worker(worker_id: int) -> None:
    """Decoding needs a few percent of one core. One thread per native pool (BLAS, OpenMP),
    whose idle threads would otherwise spin on the cores the network computes on, and a lower
    priority, so the worker takes the cycles the network leaves idle. SIGTERM (also the one a
    shell sends the whole process group) ends a worker quietly, with status 0: killed by the
    signal, as torch's own handler has it, the worker would make DataLoader raise "worker
    killed by signal" in the main process, ahead of the main process's own clean ending."""
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    threadpool_limits(1)
    try:
        os.nice(5)
    except OSError:
        pass


def _collate(items):
    good = [(i, x) for i, x, _, _ in items if x is not None]
    bad = [(i, reason) for i, x, reason, _ in items if x is None]
    silent = [i for i, _, _, quiet in items if quiet]
    rows = [i for i, _ in good]
    signals = [x for _, x in good]
    if len({len(x) for x in signals}) == 1:  # one length: stacked here, in the worker
        return rows, torch.from_numpy(np.stack(signals)), bad, silent
    return rows, signals or None, bad, silent


def _batches(audio: ClipAudio, batch_size: int, num_workers: int) -> Iterator[tuple]:
    """(rows, batch, failed) for consecutive batches of clips.

    With workers, the first batch is decoded here, before they are forked: a forked worker's
    first clips decode several times slower (copy-on-write faults on this process's memory),
    and this way the network computes batch one while the workers start on batch two.
    """
    if num_workers == 0:
        yield from DataLoader(audio, batch_size=batch_size, collate_fn=_collate)
        return
    head = range(min(batch_size, len(audio)))
    first = _collate([audio[i] for i in head])
    if len(head) == len(audio):
        yield first
        return
    workers = iter(  # forks the workers, which start on batch two
        DataLoader(
            Subset(audio, range(len(head), len(audio))),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_collate,
            worker_init_fn=_quiet_worker,
            prefetch_factor=2,
            # Linux's default, named explicitly: inside joblib's loky workers the default
            # multiprocessing context is loky's, which DataLoader cannot start workers with.
            multiprocessing_context="fork" if sys.platform.startswith("linux") else None,
        )
    )
    yield first
    yield from workers


@dataclass
class ExtractSettings:
    batch_size: int = 8
    num_workers: int = 1
    on_bad_clip: str = "error"  # one of BAD_CLIP_POLICIES
    progress: bool = True
    precision: str = "fp32"  # bf16 (CPU with bf16 units, or CUDA) or fp16 (CUDA): see precision.py
    inputs: InputSettings = field(default_factory=InputSettings)
    label: str = ""  # the progress bar's name for the front-end: its config name (timbral_temporal)


def extract(
    frontend: FrontEnd,
    clips: Sequence[Clip],
    out: np.ndarray,
    device: torch.device,
    settings: ExtractSettings,
    compute: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Write one feature row per clip into ``out``; return the clips left out and why (their
    rows hold NaN), and the silent clips (kept, but worth a look).

    Under ``on_bad_clip=error`` the first clip that fails to decode raises AudioError.
    ``compute`` maps a batch of the front-end's inputs to the rows (default: its features;
    weights=trained stores the inputs themselves, flattened).
    """
    if settings.on_bad_clip not in BAD_CLIP_POLICIES:
        raise ConfigError(f"dataset.on_bad_clip={settings.on_bad_clip!r} must be one of {', '.join(BAD_CLIP_POLICIES)}")
    if isinstance(frontend, Embeddings):  # vectors computed elsewhere: nothing to decode
        out[:] = frontend.rows(clips)
        return {}, []
    loader = _batches(ClipAudio(clips, frontend, settings.inputs), settings.batch_size, settings.num_workers)
    bad: dict[str, str] = {}
    silent: list[str] = []
    frontend = frontend.to(device).eval()
    precision = effective_precision(device, settings.precision)
    reduced = contextlib.nullcontext() if device.type == "cpu" else autocast(device, precision)
    # on the CPU, bf16 weights ahead of time and bf16 inputs rather than autocast's casts per call
    compute = compute or network_features(frontend, device, precision)
    with torch.inference_mode(), tqdm(
        total=len(clips), desc=f"extracting {settings.label or type(frontend).__name__}", unit="clip", disable=not settings.progress
    ) as bar:
        for rows, batch, failed, quiet in loader:
            for i, reason in failed:
                if settings.on_bad_clip == "error":
                    raise AudioError(clips[i].path, reason)
                bad[clips[i].clip_id] = reason
                out[i] = np.nan
            silent += [clips[i].clip_id for i in quiet]
            if batch is not None:
                # the log-mel in full precision, the network in the run's precision
                for positions, x in network_inputs(frontend, batch, device, settings.inputs):
                    with reduced:
                        out[[rows[p] for p in positions]] = compute(x).float().cpu().numpy()
            bar.update(len(rows) + len(failed))
    return bad, silent

