"""Where the compiled CSR kernels are kept between processes, and what is checked before one is
loaded: loading a shared library runs its code, and a damaged one crashes the process.

- **Who may have written it.** The cache (`$SLIMKIT_CACHE/extensions`, default
  `~/.cache/slimkit/extensions`) is used only when it, the folders inside it and every file
  loaded from it belong to the current user and no one else may write them, and every folder
  above it belongs to the user or root and is not writable by others (unless sticky, like
  /tmp). Group write is others' write, except for the user's own private group (Debian and
  Ubuntu's umask 002). Otherwise a warning names the folder and the problem, and the kernels are built in a
  private temporary folder for this process instead (slower start, same kernels). Folders
  slimkit creates are 0700. On Windows (no POSIX owners) only the checksum applies.
- **That it is whole.** After a build, the library's size and sha256 go into a record beside it
  (`library.json`, written atomically). A library is loaded only when it matches its record; a
  missing or different record (a build killed halfway, a truncated or edited file) clears the
  folder and builds again, so a truncated library is never mapped (which would be a SIGBUS).
- **One builder at a time.** Processes of one user take a lock file beside the folder (where
  `fcntl` exists) around check, build and record, so a second process waits for the first
  build instead of clearing it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Iterator

from slimkit.utils.fileio import atomic_write_text

log = logging.getLogger("slimkit")

RECORD = "library.json"
PRIVATE = 0o700
_private_root: Path | None = None
_warned: set[Path] = set()


def current_uid() -> int | None:
    """The user whose files may be loaded; None where POSIX ownership does not exist (Windows)."""
    return os.getuid() if hasattr(os, "getuid") else None


def private_group(gid: int, uid: int) -> bool:
    """Whether `gid` is `uid`'s user-private group: its primary group, named like it, with no
    other listed member. Debian and Ubuntu give every user one and a umask of 002, so the
    folders they make are group-writable without anyone else being able to write them."""
    try:
        import grp
        import pwd
    except ImportError:  # not POSIX
        return False
    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except KeyError:  # unknown ids: assume shared
        return False
    return gid == user.pw_gid and group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}


def _writable_by_others(info: os.stat_result, uid: int) -> bool:
    if info.st_mode & stat.S_IWOTH:
        return True
    return bool(info.st_mode & stat.S_IWGRP) and not private_group(info.st_gid, uid)


def _owner_problem(path: Path, info: os.stat_result, uid: int, *, allow_root: bool) -> str | None:
    if info.st_uid == uid or (allow_root and info.st_uid == 0):
        return None
    return f"{path} belongs to another user (uid {info.st_uid}, you are {uid})"


def folder_problem(folder: Path, top: Path) -> str | None:
    """Why `folder` (at or below the cache root `top`) must not hold code to load, or None.

    `folder` and its parents up to `top` must be the user's own and not group/world-writable;
    the folders above `top` (and the real folders behind symbolic links) must belong to the user
    or root and be writable by no one else unless sticky."""
    uid = current_uid()
    if uid is None:
        return None
    folder, top = Path(os.path.abspath(folder)), Path(os.path.abspath(top))
    tops = {top, top.resolve()}
    chain = [folder, *folder.parents]
    chain += [p for p in (folder.resolve(), *folder.resolve().parents) if p not in chain]
    for path in chain:
        info = path.stat()
        inside = any(path == t or t in path.parents for t in tops)
        problem = _owner_problem(path, info, uid, allow_root=not inside)
        if problem:
            return problem
        if _writable_by_others(info, uid) and (inside or not info.st_mode & stat.S_ISVTX):
            return f"{path} is writable by other users (mode {stat.filemode(info.st_mode)})"
    return None


def file_problem(path: Path) -> str | None:
    """Why the file at `path` must not be trusted (a link, not a plain file, someone else's, or
    writable by others), or None."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a plain file"
    uid = current_uid()
    if uid is None:
        return None
    problem = _owner_problem(path, info, uid, allow_root=False)
    if problem:
        return problem
    if _writable_by_others(info, uid):
        return f"{path} is writable by other users (mode {stat.filemode(info.st_mode)})"
    return None


def _make_private_folders(folder: Path, top: Path) -> None:
    """Create the missing folders of `folder` (above and below `top`) with mode 0700."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first: checked after
            path.mkdir(mode=PRIVATE)


def _private_root_folder() -> Path:
    """This process's own temporary folder (0700, removed at exit)."""
    global _private_root
    if _private_root is None:
        _private_root = Path(tempfile.mkdtemp(prefix="slimkit-extensions-"))
        atexit.register(shutil.rmtree, _private_root, True)
    return _private_root


def build_folder(cache_root: Path, name: str) -> Path:
    """`cache_root/extensions/name`, created 0700, when it is safe to load code from; else a
    folder of this process's private temporary folder (and a warning, once per cache root)."""
    top = Path(os.path.abspath(cache_root))
    folder = top / "extensions" / name
    try:
        _make_private_folders(folder, top)
        problem = folder_problem(folder, top)
    except OSError as exc:
        problem = f"{folder} cannot be used ({exc.strerror or exc})"
    if problem is None:
        return folder
    if top not in _warned:
        _warned.add(top)
        log.warning(
            "not loading slimkit's native kernels from the cache: %s. Building them in a private temporary "
            "folder for this process instead (a library loaded from there runs as you, so only you may be "
            "able to write it). To cache them again, make that folder yours and writable by you alone "
            "(chown, chmod go-w) or point SLIMKIT_CACHE at a folder of your own.", problem,
        )
    private = _private_root_folder() / name
    private.mkdir(mode=PRIVATE, exist_ok=True)
    return private


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock file (beside it, so clearing the folder keeps the lock) for a check,
    build and record; a no-op where `fcntl` does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(folder.parent / f"{folder.name}.lock", flags, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def verified_library(folder: Path) -> Path | None:
    """The library that `folder`'s record describes, when the record and the library are the
    user's own, unwritable by others, and the library has the recorded size and sha256; else
    None (rebuild: never load it)."""
    record_path = folder / RECORD
    if not record_path.exists() or file_problem(record_path):
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        name, size, digest = record["library"], record["size"], record["sha256"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        return None
    library = folder / name
    if not library.exists() or file_problem(library):
        return None
    if library.stat().st_size != size or _digest(library) != digest:
        return None
    return library


def record_library(library: Path) -> None:
    """Make the freshly built `library` unwritable by others and record its size and sha256."""
    library.chmod(stat.S_IMODE(library.stat().st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
    text = json.dumps({"library": library.name, "size": library.stat().st_size, "sha256": _digest(library)})
    record_path = atomic_write_text(library.parent / RECORD, text + "\n")
    record_path.chmod(0o600)


def clear(folder: Path) -> None:
    """Remove everything in `folder` (unverified build outputs) and make it again, 0700."""
    shutil.rmtree(folder)
    folder.mkdir(mode=PRIVATE)


def import_library(library: Path) -> ModuleType:
    """Import the Python extension module in `library` (its name is the file name's stem)."""
    name = library.name.split(".")[0]
    spec = importlib.util.spec_from_file_location(name, library)
    if spec is None or spec.loader is None:
        raise ImportError(f"{library} is not a loadable Python extension")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
