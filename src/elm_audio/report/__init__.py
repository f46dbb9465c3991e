"""Compare architectures from the runs in MLflow: ``python -m elm_audio.report``."""

from .build import Report, build, build_all
from .collect import load_runs
from .stats import (
    corrected_t,
    holm,
    mcnemar_exact,
    pairwise,
    select_best,
    summarize,
    wilson,
)

__all__ = ["Report", "build", "build_all", "corrected_t", "holm", "load_runs", "mcnemar_exact", "pairwise", "select_best", "summarize", "wilson"]
