"""The run's feature matrix: loaded from the cache, or extracted and stored there."""

from __future__ import annotations

import time

import mlflow
import numpy as np
from omegaconf import DictConfig

from .cache import FeatureCache, Features
from .datasets import DatasetError
from .datasets.check import CheckReport
from .devices import resolve_device
from .extract import ExtractSettings, extract
from .inputs import InputSettings
from .plan import Plan


def load_or_extract(cfg: DictConfig, plan: Plan, cache: FeatureCache) -> tuple[Features, bool]:
    """The features of ``plan.key`` (callers hold the cache lock), and whether they were
    computed now. Before extracting, every header is read: an unreadable clip stops the run
    then, not hours in."""
    found = cache.load(plan.key)
    if found is not None:
        return found, False
    report = CheckReport.from_survey(plan.dataset, plan.survey, read_headers=True, progress=cfg.extract.progress)
    text = report.render()
    if report.bad_clips and plan.dataset.on_bad_clip == "error":
        raise DatasetError(text)
    mlflow.log_text(text, "data_check.txt")
    settings = ExtractSettings(
        batch_size=cfg.extract.batch_size,
        num_workers=cfg.extract.num_workers,
        on_bad_clip=plan.dataset.on_bad_clip,
        progress=cfg.extract.progress,
        precision=cfg.precision,
        inputs=InputSettings(cfg.audio.fit, cfg.audio.fit_stage, cfg.audio.stft_padding),
    )
    clips = plan.index.clips

    def fill(rows: np.ndarray) -> dict:
        start = time.perf_counter()
        bad = extract(plan.frontend, clips, rows, resolve_device(cfg.device), settings)
        return {
            "clip_ids": [c.clip_id for c in clips],
            "labels": [c.label for c in clips],
            "bad_clips": bad,
            "extract_seconds": time.perf_counter() - start,
        }

    return cache.store(plan.key, len(clips), plan.profile["feature_dim"], fill), True
