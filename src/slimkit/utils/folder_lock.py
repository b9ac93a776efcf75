"""An exclusive lock on a folder, held by one process at a time: two slimkit runs writing one run
folder would mix their files.

The lock is `fcntl.flock` on a lock file inside the folder that names the holder's pid. The kernel
drops it when the holder exits in any way (SIGKILL and power loss included), so a crashed run never
leaves a stale lock behind; the file itself stays, and the next holder writes its own pid. Within
one process the lock is re-entrant (a pipeline that holds its folder may call another that takes
the same folder), while another process, or another open of the file, is refused at once.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".slimkit.lock"


class FolderLocked(RuntimeError):
    """Another process holds the folder's lock."""

    def __init__(self, folder: Path, holder_pid: int | None) -> None:
        self.folder, self.holder_pid = folder, holder_pid
        self.holder = f"pid {holder_pid}" if holder_pid is not None else "a process that has not written its pid yet"
        super().__init__(f"{folder} is locked by {self.holder}")


@dataclass
class _Held:
    fd: int
    depth: int


_held: dict[str, _Held] = {}  # this process's locks, by the folder's real path


def _holder_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _acquire(folder: Path) -> int:
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # the umask applies
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder_pid(fd)
        os.close(fd)
        raise FolderLocked(folder, holder) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold `folder`'s lock (the folder must exist) until the block ends; FolderLocked names the
    holder's pid when another process has it."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    held = _held.get(key)
    if held is None:
        held = _held[key] = _Held(_acquire(folder), 0)
    held.depth += 1
    try:
        yield
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _held[key]
            os.close(held.fd)  # releases the flock

