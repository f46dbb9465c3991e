"""Credentials in URIs never leave the process: ``scheme://user:password@host`` is shown, logged,
saved and recorded as ``scheme://user:***@host``.

For an MLflow server, prefer MLflow's own variables (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD): ``tracking.connect`` moves credentials given in an http(s)
``tracking.uri`` into them. Database URLs (PostgreSQL, MySQL) must keep theirs to connect, so
they are redacted wherever they are shown or written: MLflow params and artifacts, Hydra's saved
configs (a Hydra callback, run before each job starts), log records, printed lines, errors.
What Hydra and Python print straight to the terminal, past logging (Hydra's "Error executing job
with overrides: [...]", tracebacks, an uncaught exception's message), is redacted by wrapping
sys.stdout and sys.stderr (``guard_streams``: by the command line before Hydra starts, and by the
callback in a job's own process).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, unquote_plus

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

SCHEME = r"\b[a-zA-Z][a-zA-Z0-9+.-]*://"
# scheme://user:password@ : as SQLAlchemy and urllib read a URI, the password may hold '/', spaces
# and quotes; in free text it runs to the last '@' on its line before any other URI (a password
# with an '@' of its own is hidden whole, at worst with a little of what follows).
CREDENTIALS = re.compile(rf"(?P<head>{SCHEME}[^/:@\s'\"]*):(?P<secret>(?:(?!{SCHEME})[^\n])*)@")
# ?password=... and the like in a URI's query (libpq, MySQL drivers, tokens in http URLs): in free
# text the value ends at '&', '#', a space or a quote; in a whole value at '&' or '#' only.
QUERY_KEYS = r"[?&;](?:password|passwd|pwd|pass|sslpassword|secret|token|access_token|api_key|apikey|auth)="
QUERY_SECRET = re.compile(rf"(?P<head>{QUERY_KEYS})(?P<secret>[^&#\s'\"]*)", re.IGNORECASE)
QUERY_SECRET_VALUE = re.compile(rf"(?P<head>{QUERY_KEYS})(?P<secret>[^&#\n]*)", re.IGNORECASE)
HIDDEN = "***"
# Secrets found in whole values (the config, a storage URL) that the free-text patterns would cut
# short (a query password with a space, one with an '@'): hidden wherever they show up later. A
# plain secret is left to the patterns: hiding every "optuna" in the text would garble it.
_KNOWN: set[str] = set()
CUT_SHORT = re.compile(r"[\s'\"&#@]")
SHORTEST_KNOWN = 4


def remember(value: str) -> None:
    """Note the passwords and query secrets of a whole value (a URI, or ``key=URI``)."""
    found = [m["secret"] for m in CREDENTIALS.finditer(value)] + [m["secret"] for m in QUERY_SECRET_VALUE.finditer(value)]
    for secret in found:
        for form in {secret, unquote(secret), unquote_plus(secret)}:
            if len(form) >= SHORTEST_KNOWN and CUT_SHORT.search(form):
                _KNOWN.add(form)


def redact(text: Any) -> str:
    """``text`` with every URI password and query secret replaced by ***."""
    clean = str(text)
    for secret in sorted(_KNOWN, key=len, reverse=True):  # before the patterns cut them in pieces
        clean = clean.replace(secret, HIDDEN)
    clean = CREDENTIALS.sub(lambda m: f"{m['head']}:{HIDDEN}@", clean)
    return QUERY_SECRET.sub(lambda m: m["head"] + HIDDEN, clean)


def redact_value(value: Any) -> str:
    """A whole value redacted, its secrets remembered for the text that quotes it later."""
    value = str(value)
    remember(value)
    return redact(value)


def redact_tree(tree: Any) -> Any:
    """A config container (dicts, lists, values) with every string redacted."""
    if isinstance(tree, dict):
        return {k: redact_tree(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact_tree(v) for v in tree]
    return redact_value(tree) if isinstance(tree, str) else tree


# Values read from the environment are recorded as written (``${oc.env:TOKEN}``), never resolved:
# an environment variable is where a token or password belongs. The cache folder is a path, and
# the shipped config reads it from ELM_AUDIO_CACHE: it is recorded resolved.
RESOLVED_FROM_ENVIRONMENT = ("cache.dir",)
ENV_INTERPOLATION = re.compile(r"\$\{\s*oc\.env\s*:")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict's leaves by dotted key (``classifier.C``), as MLflow params name them."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def remember_tree(tree: Any) -> None:
    for value in flatten(tree).values():
        remember(str(value))


def from_environment(raw: Any) -> set[str]:
    """The dotted keys of an unresolved config container whose value comes from an environment
    variable, directly or through interpolations of such keys."""
    texts = {k: str(v) for k, v in flatten(raw).items() if isinstance(v, (str, list)) and "${" in str(v)}
    found = {k for k, v in texts.items() if ENV_INTERPOLATION.search(v) and k not in RESOLVED_FROM_ENVIRONMENT}
    while True:
        more = {k for k, v in texts.items() if k not in found and any("${" + f in v for f in found)}
        if not more:
            return found
        found |= more


def as_written_from_environment(resolved: Any, raw: Any) -> Any:
    """``resolved`` (a config container) with every value that comes from the environment put
    back as written in ``raw`` (the same config unresolved)."""
    keys = from_environment(raw)

    def swap(res: Any, unres: Any, prefix: str) -> Any:
        if prefix[:-1] in keys:
            return unres
        if isinstance(res, dict) and isinstance(unres, dict):
            return {k: swap(v, unres.get(k), f"{prefix}{k}.") for k, v in res.items()}
        return res

    return swap(resolved, raw, "")


class RedactingFilter(logging.Filter):
    """Redacts log records before any handler writes them (Hydra's job log, the console): the
    message, and the traceback of a record logged with one (Hydra logs a failed job's exception
    to the job's .log file), whose messages may quote a URI."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:  # formatted once here; formatters reuse exc_text
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def guard_logging() -> None:
    """Put the filter on every handler configured so far (Hydra configures them at startup)."""
    for logger in [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


class RedactingStream:
    """A text stream (sys.stdout, sys.stderr) that redacts each write before passing it on; every
    other attribute is the wrapped stream's. A URI is written whole by everything that prints
    one (a log line, a traceback's line, an exception's message, Hydra's list of overrides)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def guard_streams() -> None:
    """Redact everything written to sys.stdout and sys.stderr from now on, by Hydra (which writes
    a failed job's overrides and traceback straight to stderr), Python (an uncaught exception,
    a SystemExit's message) or the code; the logging handlers Hydra configures later write to
    these streams too."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))


def redact_file(path: Path) -> None:
    """Redact a saved file in place. YAML is read and redacted value by value (a long value may
    be wrapped over lines), then written back; other text line by line."""
    if not path.is_file():
        return
    text = path.read_text()
    clean = redact(text)
    if path.suffix == ".yaml":
        try:
            tree = yaml.safe_load(text)
        except yaml.YAMLError:
            tree = None
        if isinstance(tree, (dict, list)) and redact_tree(tree) != tree:
            clean = yaml.safe_dump(redact_tree(tree), default_flow_style=False, sort_keys=False, allow_unicode=True, width=10**6)
    if clean != text:
        path.write_text(clean)


class RedactSecrets(Callback):
    """Hydra callback: redacts the configs Hydra has just saved for a job (``.hydra/*.yaml``,
    a basic sweep's ``multirun.yaml``) and filters the log and the printed lines, before the job
    runs."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        remember_tree(OmegaConf.to_container(config, resolve=False))
        guard_logging()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        remember_tree(OmegaConf.to_container(config, resolve=False))
        guard_logging()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        remember_tree(OmegaConf.to_container(config, resolve=False))
        guard_logging()
        guard_streams()  # a job in a process of its own (joblib, SLURM) did not start in __main__.main
        hydra = config.hydra
        if hydra.output_subdir is not None:
            for saved in (Path(hydra.runtime.output_dir) / hydra.output_subdir).glob("*.yaml"):
                redact_file(saved)
        if hydra.mode is not None and str(hydra.mode).endswith("MULTIRUN"):
            redact_file(Path(hydra.sweep.dir) / "multirun.yaml")
