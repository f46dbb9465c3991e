"""Whether a process on this machine is still alive (for runs and cache folders left by a
process killed with SIGKILL)."""

from __future__ import annotations

import os
import socket


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def gone_from_here(host: object, pid: object) -> bool:
    """Whether a process recorded as (host, pid) ran on this machine and has ended; False for
    other machines' processes or a record that is not one (they may be running)."""
    return host == socket.gethostname() and str(pid).isdigit() and not process_alive(int(pid))
