"""Datasets: each lists its clips with labels and folds or partitions (a ClipIndex)."""

from .base import Clip, ClipIndex, Dataset, DatasetError

__all__ = ["Clip", "ClipIndex", "Dataset", "DatasetError"]
