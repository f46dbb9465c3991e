"""Files in folders other users share (the cache, training checkpoints, the clips' digests).

A colleague who can write a shared folder can plant a symbolic link or a FIFO under a name a
run is about to use, and has a umask of their own. So here:

- a file is written under a temporary name no one can guess, created exclusively (``mkstemp``:
  ``O_CREAT | O_EXCL``, which never follows a link), then renamed over its final name (a rename
  replaces a link planted there rather than writing through it);
- a file is read only when it is a regular file and not a link, opened without blocking (a FIFO
  would block for ever) and checked on the open descriptor;
- what a run creates is usable by its group whatever the creator's umask: the group gets the
  owner's bits (folders keep the set-group-id bit of the folder they are made in), while others
  get what the umask allows them.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

TMP_PREFIX = ".tmp-"


class NotARegularFile(ValueError):
    """A path that names a link, a FIFO, a device or a folder where a regular file belongs."""


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode(writable_by_group: bool = False) -> int:
    """Owner read-write, the group read (and write, for locks), others as the umask allows."""
    group = 0o060 if writable_by_group else 0o040
    return 0o600 | group | (0o006 & ~umask())


def folder_mode(parent: Path, writable_by_group: bool = False) -> int:
    """Owner all, the group read and enter (and write), others as the umask allows; the
    set-group-id bit where ``parent`` has it, so new files keep the shared folder's group."""
    group = 0o070 if writable_by_group else 0o050
    setgid = os.stat(parent).st_mode & stat.S_ISGID
    return 0o700 | group | (0o007 & ~umask()) | setgid


def share(path: Path) -> None:
    """Give what a run made (a file, or a folder and everything in it) the group's modes."""
    if not is_real_folder(path):
        os.chmod(path, file_mode())
        return
    for folder, _, files in os.walk(path):  # parents first: each folder's set-group-id bit is settled before its children's
        os.chmod(folder, folder_mode(Path(folder).parent))
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), file_mode())


def make_folder(path: Path, writable_by_group: bool = False) -> None:
    """``mkdir -p`` whose new folders get the group's modes whatever the umask."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        os.chmod(folder, folder_mode(folder.parent, writable_by_group))


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fresh temporary file beside it (see the module)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


FILE_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket",
              stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}  # fmt: skip


def open_regular(path: Path, follow_links: bool = False) -> BinaryIO:
    """``path`` opened for reading, where it is a regular file (and, unless ``follow_links``,
    not a link); OSError where it cannot be opened (PermissionError: not readable by this
    user), NotARegularFile otherwise. Opened without blocking: a FIFO is refused at once."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_links:
            raise NotARegularFile(f"{path.name} is a symbolic link, not a file of its own") from None
        raise
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind != stat.S_IFREG:
        os.close(fd)
        raise NotARegularFile(f"{path.name} is {FILE_KINDS.get(kind, 'a special file')}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path: Path) -> bytes:
    with open_regular(path) as fh:
        return fh.read()


def is_real_folder(path: Path) -> bool:
    """A folder, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
