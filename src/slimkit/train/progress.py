"""Progress display: a tqdm bar on a terminal, plain log lines when output is not a TTY (CI, files)."""

from __future__ import annotations

import logging
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("slimkit")


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return mode


def progress(iterable: Iterable[T], *, total: int, desc: str, mode: str = "auto") -> Iterator[T]:
    """Iterate with a bar (mode 'bar'), or silently ('log'/'none': the caller logs summaries)."""
    if resolve_mode(mode) == "bar":
        yield from tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    else:
        yield from iterable


def report(message: str, mode: str = "auto") -> None:
    """Print a summary line without breaking an active bar (rank 0 only under DDP)."""
    from slimkit.train.distributed import is_main

    resolved = resolve_mode(mode)
    if resolved == "none" or not is_main():
        return
    if resolved == "bar":
        tqdm.write(message, file=sys.stderr)
    else:
        log.info(message)
