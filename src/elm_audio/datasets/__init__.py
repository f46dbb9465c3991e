"""Datasets: each lists its clips with labels and folds or partitions (a ClipIndex)."""

from .base import Dataset
from .index import (
    TASK_KINDS,
    Clip,
    ClipIndex,
    DatasetError,
    label_for_tags,
    label_for_target,
)

__all__ = ["TASK_KINDS", "Clip", "ClipIndex", "Dataset", "DatasetError", "label_for_tags", "label_for_target"]
