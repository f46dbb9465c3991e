"""Two users of one group, each with a umask of their own: real uids, set in forked children
(the tests that use them need root)."""

from __future__ import annotations

import json
import os

GROUP, ALICE, BOB = 47_000, 47_001, 47_002


def as_user(uid: int, mask: int, action) -> dict:
    """``action()`` run in a forked child as ``uid`` (group GROUP) under ``mask``: what it
    returned, or the error it raised, as {"ok": ...} or {"error": "Type: message"}."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no imports from here on (root's site-packages may be closed to it)
        os.close(read)
        try:
            os.setgroups([GROUP])
            os.setgid(GROUP)
            os.setuid(uid)
            os.umask(mask)
            result = {"ok": action()}
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            result = {"error": f"{type(err).__name__}: {err}"}
        os.write(write, json.dumps(result, default=str).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return json.loads(out)
