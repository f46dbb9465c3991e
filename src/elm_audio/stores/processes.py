"""Whether a process is still alive, and whether the process that left a run or a trial RUNNING
is proven gone.

Host and pid alone do not name a process: containers that share the host's network share its
host name, each with pid numbers of its own, and pids are reused. So a run records its process's
identity: host, pid, the kernel's boot id, the pid namespace and the process's start time (from
``/proc``), and a digest of the machine id. A recorded process is proven gone only when

- it ran on this boot of this kernel and in this pid namespace, and its pid is free or now names
  a process that started at another time (the pid was reused); or
- it ran on this machine (same host name and machine id) under an earlier boot (a reboot or a
  power loss ended it).

Anything else (another pid namespace, another machine, a record without the identity, as older
versions wrote, or a system without ``/proc``) cannot be proven gone and is left alone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
from collections.abc import Mapping
from pathlib import Path

# The identity's fields, in the order tags and user attributes hold them.
FIELDS = ("host", "pid", "boot_id", "pid_ns", "start_time", "machine")
# systemd asks applications not to expose the machine id itself, only a keyed digest of it.
MACHINE_KEY = b"elm_audio process identity"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def start_time(proc: str = "self") -> str | None:
    """A process's start time in clock ticks after boot (/proc/<pid>/stat, field 22)."""
    stat = _read(f"/proc/{proc}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
    return fields[19] if len(fields) > 19 else None


def pid_namespace(proc: str = "self") -> str | None:
    try:
        return str(os.stat(f"/proc/{proc}/ns/pid").st_ino)
    except OSError:
        return None


def machine() -> str | None:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        found = _read(path)
        if found:
            return hmac.new(MACHINE_KEY, found.encode(), hashlib.sha256).hexdigest()[:32]
    return None


def identity() -> dict[str, str]:
    """This process's identity; fields that cannot be read are left out."""
    found = {
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "pid_ns": pid_namespace(),
        "start_time": start_time(),  # /proc/self: right even where /proc is another namespace's
        "machine": machine(),
    }
    return {k: v for k, v in found.items() if v}


def proven_gone(record: Mapping[str, object]) -> bool:
    """Whether the process a recorded identity names has ended (see the module's docstring)."""
    here = identity()
    got = {k: str(record.get(k) or "") for k in FIELDS}
    if any(not got[k] for k in FIELDS[:5]) or got["host"] != here["host"] or not {"boot_id", "pid_ns"} <= set(here):
        return False  # an older record (host and pid only), or a system without /proc
    if got["boot_id"] != here["boot_id"]:
        return "machine" in here and got["machine"] == here["machine"]  # this machine, rebooted since
    if got["pid_ns"] != here["pid_ns"] or not got["pid"].isdigit():
        return False  # another pid namespace: its pids are not ours to look up
    pid = int(got["pid"])
    if not process_alive(pid):
        return True
    now = start_time(str(pid))
    return now is not None and now != got["start_time"]  # the pid now names a later process
