"""Atomic file writes: a crash or kill mid-write must never leave a half-written checkpoint,
model or metrics file behind (write to a temp file in the same folder, fsync, `os.replace`, fsync
the folder so the new name survives a power loss).

A full disk ends in DiskFullError naming the file, with the previous version of it untouched.
A temp file left by a killed process (`.NAME.XXXXXXXX.tmp`) is recognised by `is_temp_file` and
removed by `remove_stale_temp_files` once its folder is known to be free of other writers.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

TEMP_SUFFIX = ".tmp"
# mkstemp's name: the prefix ".TARGET.", 8 characters of [a-z0-9_], the suffix
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# libraries that write through their own (Rust/C++) code name the errno only in their message
_OS_ERROR_IN_MESSAGE = re.compile(r"os error (\d+)")


class DiskFullError(OSError):
    """No space (or no quota) was left while writing a file; the file's previous version is intact."""

    def __init__(self, path: Path, code: int, had_previous: bool) -> None:
        super().__init__(code, os.strerror(code), str(path))
        what = "no space left on device" if code == errno.ENOSPC else "disk quota exceeded"
        kept = f"the previous {path.name} is intact" if had_previous else f"{path.name} was not written"
        self.message = f"{what} while writing {path}; {kept}; free some space and run the command again"

    def __str__(self) -> str:
        return self.message


def _disk_full_errno(exc: BaseException) -> int | None:
    """ENOSPC/EDQUOT if `exc` or an exception it was raised from or while handling reports it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current.errno
        match = _OS_ERROR_IN_MESSAGE.search(str(current))
        if match and int(match.group(1)) in DISK_FULL_ERRNOS:
            return int(match.group(1))
        current = current.__cause__ or current.__context__
    return None


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (threads may be creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (the new name is in the folder's own metadata)."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` then atomically move the temp file onto `path`.

    The file gets the permissions any tool would give a new file (0666 minus the umask), not
    mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    had_previous = path.exists()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        code = _disk_full_errno(exc)
        if code is not None:
            raise DiskFullError(path, code, had_previous) from exc
        raise
    fsync_folder(path.parent)
    return path


def is_temp_file(name: str, targets: Iterable[str] | None = None) -> bool:
    """Whether `name` is an atomic write's temp file (of one of `targets`, when given)."""
    match = _TEMP_NAME.fullmatch(name)
    return match is not None and (targets is None or match.group("target") in set(targets))


def remove_stale_temp_files(folder: str | Path, targets: Iterable[str]) -> list[Path]:
    """Remove the temp files of `targets` that killed writers left in `folder` (not its subfolders).

    Only call it while no other process can be writing `folder` (e.g. under its folder lock):
    a live writer's temp file looks the same."""
    folder, targets = Path(folder), set(targets)
    removed = []
    if folder.is_dir():
        for entry in folder.iterdir():
            if is_temp_file(entry.name, targets) and entry.is_file() and not entry.is_symlink():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write strict JSON: a nan or inf (which `json` would write as a bare `NaN`, unreadable to
    other tools) raises a ValueError naming the file and the key, and nothing is written."""
    bad = _non_finite_key(data)
    if bad is not None:
        raise ValueError(f"refusing to write {path}: {bad} is not a finite number (nan/inf is not JSON)")
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _non_finite_key(data: Any, where: str = "") -> str | None:
    """Dotted path of the first nan/inf float in nested dicts and lists, or None."""
    if isinstance(data, float):
        return None if math.isfinite(data) else f"{where or 'the value'} = {data}"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite_key(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def atomic_copy(source: str | Path, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))


def _torch_save_to(obj: Any, tmp: str) -> None:
    # through a Python file object: torch's own file writer turns a full disk into an opaque
    # "unexpected pos" error, a Python file raises the OSError that says what happened
    with open(tmp, "wb") as f:
        torch.save(obj, f)


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, lambda tmp: _torch_save_to(obj, tmp))
