"""Credentials in URIs never leave the process: ``scheme://user:password@host`` is shown, logged,
saved and recorded as ``scheme://user:***@host``.

For an MLflow server, prefer MLflow's own variables (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD): ``tracking.connect`` moves credentials given in an http(s)
``tracking.uri`` into them. Database URLs (PostgreSQL, MySQL) must keep theirs to connect, so
they are redacted wherever they are shown or written: MLflow params and artifacts, Hydra's saved
configs (a Hydra callback, run before each job starts), log records, printed lines, errors.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# scheme://user:password@  (the password runs to the last @ before the host's path)
CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s'\"]*):(?P<secret>[^\s'\"/]*)@")
HIDDEN = "***"


def redact(text: Any) -> str:
    """``text`` with every URI password replaced by ***."""
    return CREDENTIALS.sub(lambda m: f"{m['head']}:{HIDDEN}@", str(text))


def redact_tree(tree: Any) -> Any:
    """A config container (dicts, lists, values) with every string redacted."""
    if isinstance(tree, dict):
        return {k: redact_tree(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact_tree(v) for v in tree]
    return redact(tree) if isinstance(tree, str) else tree


class RedactingFilter(logging.Filter):
    """Redacts log records before any handler writes them (Hydra's job log, the console)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def guard_logging() -> None:
    """Put the filter on every handler configured so far (Hydra configures them at startup)."""
    for logger in [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def redact_file(path: Path) -> None:
    if path.is_file():
        text = path.read_text()
        clean = redact(text)
        if clean != text:
            path.write_text(clean)


class RedactSecrets(Callback):
    """Hydra callback: redacts the configs Hydra has just saved for a job (``.hydra/*.yaml``,
    a basic sweep's ``multirun.yaml``) and filters the log, before the job runs."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        guard_logging()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        guard_logging()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        guard_logging()
        hydra = config.hydra
        if hydra.output_subdir is not None:
            for saved in (Path(hydra.runtime.output_dir) / hydra.output_subdir).glob("*.yaml"):
                redact_file(saved)
        if hydra.mode is not None and str(hydra.mode).endswith("MULTIRUN"):
            redact_file(Path(hydra.sweep.dir) / "multirun.yaml")
