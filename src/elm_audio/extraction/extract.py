"""Batched feature extraction: threads decode while the front-end computes."""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from tqdm import tqdm  # not tqdm.auto: no widget warning where a notebook imports it

from ..config import ConfigError, shown
from ..datasets.index import BAD_CLIP_POLICIES, Clip
from ..devices import convolutions_tuned
from ..frontends import FrontEnd
from ..frontends.imported import Embeddings
from ..sound.decode import SILENCE, AudioError, load
from .inputs import (
    InputSettings,
    fit_decoded,
    network_inputs,
    samples_to_decode,
    too_short,
)
from .precision import autocast, network_features


class ClipAudio:
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


PREFETCH = 2  # batches decoded ahead per decoding thread


def _quiet_thread() -> None:
    """Decoding needs a few percent of one core: at a lower priority (a thread's own on Linux)
    its threads take the cycles the network leaves idle."""
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
    if len({len(x) for x in signals}) == 1:  # one length: stacked here, in the decoding thread
        return rows, torch.from_numpy(np.stack(signals)), bad, silent
    return rows, signals or None, bad, silent


def _decode(audio: ClipAudio, start: int, stop: int) -> tuple:
    return _collate([audio[i] for i in range(start, stop)])


Job = tuple[tuple, Callable[[], tuple]]  # ((its first position, its clip ids), what decodes the batch)


class Decoder:
    """Threads that decode batches of clips ahead of the network, kept across the extractions
    of one run's chunks (a context manager: leaving it stops them).

    With ``num_workers`` > 0, that many threads decode the next batches while the network
    computes this one: libsndfile and soxr decode outside the GIL, and a thread costs nothing to
    start. A forked worker process cost every extraction 0.3 to 0.7 s at its start (vgg large),
    the main process paying copy-on-write faults on its own memory after the fork. The threads
    outlive a chunk so that, while its last batches compute, the first batches of the chunk
    likely to come next (``then``) are decoded: a pool per chunk decoded a chunk, then idled
    while the network computed it (on a GPU, where 16 threads decode a 256-clip chunk in one
    batch each, about as long as the network takes for it: the two in turn, not side by side).
    """

    def __init__(self, frontend: FrontEnd, settings: ExtractSettings):
        self.frontend, self.settings = frontend, settings
        self.pool = (
            ThreadPoolExecutor(settings.num_workers, thread_name_prefix="elm_audio-decode", initializer=_quiet_thread)
            if settings.num_workers > 0
            else None
        )
        self.ahead: deque[tuple[tuple, Future]] = deque()  # the next clips' batches, decoding

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc) -> None:
        self._drop()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _drop(self, keep: set[tuple] = frozenset()) -> dict[tuple, Future]:
        """What was asked for ahead of the batches ``keep``; the rest decodes nothing more."""
        kept = {key: future for key, future in self.ahead if key in keep}
        for key, future in self.ahead:
            if key not in keep:
                future.cancel()
        self.ahead.clear()
        return kept

    def _jobs(self, clips: Sequence[Clip]) -> Iterator[Job]:
        audio = ClipAudio(clips, self.frontend, self.settings.inputs)
        size = self.settings.batch_size
        for start in range(0, len(clips), size):
            stop = min(start + size, len(clips))
            yield (start, *(c.clip_id for c in clips[start:stop])), partial(_decode, audio, start, stop)

    def batches(self, clips: Sequence[Clip], then: Sequence[Clip] = ()) -> Iterator[tuple]:
        """(rows, batch, failed, silent) for consecutive batches of ``clips`` (rows: positions in
        ``clips``); once all of them are on their way, the first batches of ``then`` are decoded
        for the next call. A batch decoded ahead for other clips than those asked for is dropped."""
        jobs = deque(self._jobs(clips))
        if self.pool is None:
            yield from (decode() for _, decode in jobs)
            return
        early = self._drop(keep={key for key, _ in jobs})
        following = self._jobs(then)
        mine: deque[Future] = deque()

        def submit() -> None:
            if jobs:
                key, decode = jobs.popleft()
                mine.append(early.pop(key, None) or self.pool.submit(decode))
                return
            job = next(following, None)
            if job is not None:
                self.ahead.append((job[0], self.pool.submit(job[1])))

        for _ in range(PREFETCH * self.settings.num_workers):
            submit()
        finished = False
        try:
            while mine:
                done = mine.popleft().result()
                submit()
                yield done
            finished = True
        finally:  # stopped early (an error, Ctrl-C): decode nothing more
            if not finished:
                for future in mine:
                    future.cancel()
                self._drop()


@dataclass
class ExtractSettings:
    batch_size: int = 8
    num_workers: int = 1
    on_bad_clip: str = "error"  # one of BAD_CLIP_POLICIES
    progress: bool = True
    precision: str = "fp32"  # the one the run computes in (precision.effective_precision's answer, settings.load's)
    inputs: InputSettings = field(default_factory=InputSettings)
    label: str = ""  # the progress bar's name for the front-end: its config name (timbral_temporal)


def extract(
    frontend: FrontEnd,
    clips: Sequence[Clip],
    out: np.ndarray,
    device: torch.device,
    settings: ExtractSettings,
    compute: Callable[[torch.Tensor], torch.Tensor] | None = None,
    advance: Callable[[int], object] | None = None,
    decoder: Decoder | None = None,
    then: Sequence[Clip] = (),
) -> tuple[dict[str, str], list[str]]:
    """Write one feature row per clip into ``out``; return the clips left out and why (their
    rows hold NaN), and the silent clips (kept, but worth a look).

    Under ``on_bad_clip=error`` the first clip that fails to decode raises AudioError.
    ``compute`` maps a batch of the front-end's inputs to the rows (default: its features;
    weights=trained stores the inputs themselves, flattened). ``advance`` is told how many
    clips each batch completes, where a caller shows the progress (chunks.py: one bar across
    chunks); without it, ``settings.progress`` shows a bar of these clips. ``decoder``: the
    decoding threads of a run's extractions (one of its own where None), which start on the
    clips ``then`` (those likely extracted next) once these are all on their way.
    """
    if settings.on_bad_clip not in BAD_CLIP_POLICIES:
        raise ConfigError(f"dataset.on_bad_clip={shown(settings.on_bad_clip)} must be one of {', '.join(BAD_CLIP_POLICIES)}")
    if isinstance(frontend, Embeddings):  # vectors computed elsewhere: nothing to decode
        out[:] = frontend.rows(clips)
        if advance is not None:
            advance(len(clips))
        return {}, []
    if decoder is None:
        with Decoder(frontend, settings) as own:
            return extract(frontend, clips, out, device, settings, compute, advance, own, then)
    bad: dict[str, str] = {}
    silent: list[str] = []
    frontend = frontend.to(device).eval()
    precision = settings.precision
    reduced = contextlib.nullcontext() if device.type == "cpu" else autocast(device, precision)
    # on the CPU, bf16 weights ahead of time and bf16 inputs rather than autocast's casts per call
    compute = compute or network_features(frontend, device, precision)
    with torch.inference_mode(), convolutions_tuned(device), contextlib.closing(decoder.batches(clips, then)) as loader, tqdm(
        total=len(clips),
        desc=f"extracting {settings.label or type(frontend).__name__}",
        unit="clip",
        disable=not settings.progress or advance is not None,
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
            if advance is not None:
                advance(len(rows) + len(failed))
    return bad, silent

