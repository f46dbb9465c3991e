"""Datasets: each lists its clips with labels and folds or partitions (a ClipIndex)."""

from .base import Dataset
from .index import Clip, ClipIndex, DatasetError

__all__ = ["Clip", "ClipIndex", "Dataset", "DatasetError"]
