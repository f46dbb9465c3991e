"""The run's feature matrix: loaded from the cache, or extracted and stored there."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig

from .cache import FeatureCache, Features
from .contents import changed_since
from .datasets import DatasetError
from .datasets.check import CheckReport
from .devices import resolve_device
from .extract import ExtractSettings, extract
from .frontends.imported import Imported
from .inputs import InputSettings
from .plan import Plan
from .precision import effective_precision


def extract_settings(cfg: DictConfig, plan: Plan) -> ExtractSettings:
    """How a run decodes and batches its clips, from its config."""
    return ExtractSettings(
        batch_size=cfg.extract.batch_size,
        num_workers=cfg.extract.num_workers,
        on_bad_clip=plan.dataset.on_bad_clip,
        progress=cfg.extract.progress,
        precision=cfg.precision,
        inputs=InputSettings(cfg.audio.fit, cfg.audio.fit_stage, cfg.audio.stft_padding, cfg.audio.min_fraction),
        label=f"{cfg.frontend.name} ({cfg.feature_size.name})",
    )


def load_or_extract(
    cfg: DictConfig,
    plan: Plan,
    cache: FeatureCache,
    locked: bool,
    entry: tuple[str, int, Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> tuple[Features, bool]:
    """The features of ``plan.key``, and whether they were computed now. Callers hold the key's
    lock where the cache is writable (``locked``), so that runs needing the same features compute
    them once; a read-only cache serves the entries it holds. The bad-clip policy holds either
    way: under ``on_bad_clip=error`` a cached entry that left clips out stops the run.

    ``entry`` = (key, width, compute) caches something else per clip instead (training caches
    the network inputs), under the same checks."""
    key, width, compute = entry or (plan.key, plan.profile["feature_dim"], None)
    features = cache.load(key, ([c.clip_id for c in plan.index.clips], [c.label for c in plan.index.clips]))
    computed = False
    if features is None:
        if not locked:
            raise cache.read_only_error()
        features, computed = _extract(cfg, plan, cache, key, width, compute), True
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


def _extract(cfg: DictConfig, plan: Plan, cache: FeatureCache, key: str, width: int, compute) -> Features:
    """Read every header first, so an unreadable clip stops the run now, not hours in."""
    report = CheckReport.from_survey(plan.dataset, plan.survey, read_headers=True, progress=cfg.extract.progress)
    text = report.render()
    if report.bad_clips and plan.dataset.on_bad_clip == "error":
        raise DatasetError(text)
    mlflow.log_text(text, "data_check.txt")
    settings = extract_settings(cfg, plan)
    clips = plan.index.clips
    precision = effective_precision(resolve_device(cfg.device), settings.precision)

    def fill(rows: np.ndarray) -> dict:
        start = time.perf_counter()
        bad, silent = extract(plan.frontend, clips, rows, resolve_device(cfg.device), settings, compute=compute)
        changed = changed_since([c.path for c in clips], plan.contents)
        if changed:  # its rows may be of other bytes than the key's digest: never cache them under it
            raise DatasetError(
                f"{len(changed)} clip(s) changed while the features were extracted, e.g. {changed[0]}; nothing was "
                "cached: run again once the dataset is no longer being written to"
            )
        usable = [i for i, c in enumerate(clips) if c.clip_id not in bad]
        broken = [clips[i].clip_id for i in usable if not np.isfinite(rows[i]).all()]
        if broken:  # never cache such rows as features
            raise DatasetError(f"the front-end gave non-finite features for {len(broken)} clip(s), e.g. {broken[0]}; "
                               + overflow_hint(plan.frontend, precision))  # fmt: skip
        return {
            "clip_ids": [c.clip_id for c in clips],
            "labels": [c.label for c in clips],
            "bad_clips": bad,
            "silent_clips": silent,
            "extract_seconds": time.perf_counter() - start,
        }

    return cache.store(key, len(clips), width, fill)
