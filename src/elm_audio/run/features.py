"""The run's feature matrix: loaded from the cache, or extracted (in chunks that other
processes share and a killed run resumes, chunks.py) and stored there."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..datasets import DatasetError
from ..datasets.check import CheckReport
from ..extraction.chunks import Chunk, ChunkedEntry
from ..extraction.extract import Decoder, ExtractSettings, extract
from ..frontends.imported import Imported
from ..stores.cache import FeatureCache, Features
from ..stores.contents import changed_since
from . import record
from .plan import Plan

Entry = tuple[str, int, Callable[[torch.Tensor], torch.Tensor]]  # what to cache per clip: key, width, compute


def share_extraction(settings: ExtractSettings, device: torch.device, plan: Plan, cache: FeatureCache, wait: bool = True) -> int:
    """Compute ``plan.key``'s chunks together with every other process that needs them, before
    the key's lock is taken (load_or_extract then only assembles or loads the entry): N
    processes extract about N times faster. With ``wait``, return once every chunk is complete.
    Nothing where the entry exists or the cache cannot be written. How many chunks it computed."""
    if os.path.lexists(cache.entry(plan.key)):
        return 0
    return Extraction(settings, device, plan, cache).share(wait)


def load_or_extract(
    settings: ExtractSettings,
    device: torch.device,
    plan: Plan,
    cache: FeatureCache,
    locked: bool,
    entry: Entry | None = None,
) -> tuple[Features, bool]:
    """The features of ``plan.key``, and whether they were assembled now. Callers hold the key's
    lock where the cache is writable (``locked``): one process assembles the entry, from chunks
    this one computes or resumes and others compute (share_extraction, before the lock); a
    read-only cache serves the entries it holds. The bad-clip policy holds either way: under
    ``on_bad_clip=error`` a cached entry that left clips out stops the run.

    ``entry`` = (key, width, compute) caches something else per clip instead (training caches
    the network inputs), under the same checks."""
    key = entry[0] if entry else plan.key
    features = cache.load(key, ([c.clip_id for c in plan.index.clips], [c.label for c in plan.index.clips]))
    computed = False
    if features is None:
        if not locked:
            raise cache.read_only_error()
        features, computed = Extraction(settings, device, plan, cache, entry).finish(), True
    for message in cache.damaged:
        print(f"elm_audio: {message}", file=sys.stderr, flush=True)
    if features.bad_clips and plan.dataset.on_bad_clip == "error":
        listed = "\n".join(f"  {cid}: {why}" for cid, why in sorted(features.bad_clips.items())[:15])
        raise DatasetError(
            f"{len(features.bad_clips)} clip(s) of {plan.dataset.name} cannot be used (found by an earlier "
            f"run with dataset.on_bad_clip=skip):\n{listed}\nReplace or remove them, or run with "
            "dataset.on_bad_clip=skip to leave them out (the run records which)."
        )
    return features, computed


def overflow_hint(frontend, precision: str) -> str:
    """What the run knows of why features are not finite (the decoder refuses non-finite samples)."""
    if isinstance(frontend, Imported):
        return "the imported front-end returned them: fix the module or the file that computes them"
    if precision != "fp32":
        return f"precision={precision} overflows more easily: try precision=fp32"
    return "computing in fp32 overflowed: look at those clips' samples (far outside [-1, 1]?) and replace or remove them"


def check_headers(progress: bool, plan: Plan) -> None:
    """Read every header first, so an unreadable clip stops the run now, not hours in."""
    report = CheckReport.from_survey(plan.dataset, plan.survey, read_headers=True, progress=progress)
    text = report.render()
    if report.bad_clips and plan.dataset.on_bad_clip == "error":
        raise DatasetError(text)
    record.log_data_check(text)


class Extraction:
    """The rows of one cache key for the plan's clips, computed in chunks (chunks.py) by this
    process and by any other that needs them, on ``device``; ``entry`` as load_or_extract's."""

    def __init__(self, settings: ExtractSettings, device: torch.device, plan: Plan, cache: FeatureCache, entry: Entry | None = None):
        key, width, compute = entry or (plan.key, plan.profile["feature_dim"], None)
        self.plan, self.compute = plan, compute
        self.settings = settings
        ids = [c.clip_id for c in plan.index.clips]
        self.chunks = ChunkedEntry(cache, key, ids, width, self.settings.batch_size, self.settings.label)
        self.device = device
        self.checked = False  # the headers, read before this process computes its first chunk
        self.decoder: Decoder | None = None  # while computing chunks (decoding)

    def share(self, wait: bool) -> int:
        """The chunks no other process is computing, computed here (see ChunkedEntry.share); how many."""
        with self.decoding():
            self.chunks.share(self.fill, wait, self.settings.progress)
        return self.chunks.computed

    def finish(self) -> Features:
        """Under the key's lock: what is left computed, the entry assembled."""
        with self.decoding():
            return self.chunks.finish(self.fill, [c.label for c in self.plan.index.clips], self.settings.progress)

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """One set of decoding threads for every chunk computed while inside (extract.Decoder)."""
        with Decoder(self.plan.frontend, self.settings) as self.decoder:
            try:
                yield
            finally:
                self.decoder = None

    def fill(self, chunk: Chunk, rows: np.ndarray, advance: Callable[[int], object]) -> dict:
        """One chunk's rows; never rows of bytes other than the key's, nor non-finite ones."""
        if not self.checked:
            check_headers(self.settings.progress, self.plan)
            self.checked = True
        clips = self.plan.index.clips[chunk.start : chunk.stop]
        after = self.chunks.likely_next(chunk)
        then = self.plan.index.clips[after.start : after.stop] if after else ()
        bad, silent = extract(self.plan.frontend, clips, rows, self.device, self.settings, self.compute, advance, self.decoder, then)
        changed = changed_since([c.path for c in clips], self.plan.contents[chunk.start : chunk.stop])
        if changed:  # its rows may be of other bytes than the key's digest: never cache them under it
            raise DatasetError(
                f"{len(changed)} clip(s) changed while the features were extracted, e.g. {changed[0]}; their rows "
                "were not cached: run again once the dataset is no longer being written to"
            )
        usable = [i for i, c in enumerate(clips) if c.clip_id not in bad]
        broken = [clips[i].clip_id for i in usable if not np.isfinite(rows[i]).all()]
        if broken:  # never cache such rows as features
            raise DatasetError(f"the front-end gave non-finite features for {len(broken)} clip(s), e.g. {broken[0]}; "
                               + overflow_hint(self.plan.frontend, self.settings.precision))  # fmt: skip
        return {"bad_clips": bad, "silent_clips": silent}
