"""Stopping a sweep: SIGTERM taken as Ctrl-C, and the joblib launcher's workers killed, so that
the sweeper's clean-up (ending runs, settling trials) runs whichever way it is stopped."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a sweep as Ctrl-C does (runner.run does the same for one run), through the
    clean-up a KeyboardInterrupt gets; by default it would end the sweeper at once, leaving its
    joblib workers alive and its parent run RUNNING."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_interruption(err: BaseException) -> bool:
    """Ctrl-C or SIGTERM: a KeyboardInterrupt, or the one-line SystemExit that elm_audio's app
    makes of one when it stops a trial run in the sweeper's own process (the basic launcher)."""
    return isinstance(err, KeyboardInterrupt) or (isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt))


def stop_workers(launcher: Any) -> None:
    """Kill the joblib launcher's worker processes and wait until they are reaped (so that their
    trial runs' processes are proven gone). loky keeps its workers between batches for reuse, and
    one whose sweeper has ended lives on, blocked, its memory held. The multiprocessing backend's
    pool ends with each batch; joblib terminates it when a batch is interrupted."""
    try:
        from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    except ImportError:
        return
    if not isinstance(launcher, JoblibLauncher):
        return
    from joblib.externals.loky import get_reusable_executor

    # reuse=True: asked with other arguments than joblib's, loky would replace the executor, first
    # waiting for the trials in flight to finish
    get_reusable_executor(reuse=True, kill_workers=True).shutdown(wait=True, kill_workers=True)
