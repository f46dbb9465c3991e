"""Compare architectures from the runs in MLflow: ``python -m elm_audio.report``."""

from .build import Report, build
from .collect import load_runs
from .stats import holm, paired_test, pairwise, select_best, summarize

__all__ = ["Report", "build", "holm", "load_runs", "paired_test", "pairwise", "select_best", "summarize"]
