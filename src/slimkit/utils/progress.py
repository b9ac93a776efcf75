"""Progress display: a tqdm bar on a terminal, plain log lines when output is not a TTY (CI, files).

Every long operation (training epochs, evaluation, pruning-criterion batches, SynFlow iterations,
OBS layer solves, IMP rounds, int8 calibration, accuracy and latency measurement, benchmark
sweeps) goes through `progress` (an iterable) or `Progress` (explicit `update` calls), with a
mode:

- ``"bar"``: a tqdm bar on stderr, removed when the operation ends;
- ``"log"``: at most `log_lines` lines per operation, one each time another 1/`log_lines` of the
  work is done (``"obs: 6/20 layers done (30%, 41.2s)"``), so CI logs stay short. Operations that
  end within `LOG_DELAY_S` seconds print nothing;
- ``"none"``: nothing;
- ``"auto"``: ``"bar"`` when stderr is a TTY, ``"log"`` otherwise.

Under DDP only rank 0 shows progress. Log lines go to the ``slimkit`` logger (the CLI prints its
INFO records to stderr) unless a `write` function is given.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("slimkit")

MODES = ("auto", "bar", "log", "none")
LOG_LINES = 10  # most progress lines one operation writes in log mode
LOG_DELAY_S = 2.0  # in log mode, an operation shorter than this prints no progress lines


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return mode


def _is_main() -> bool:
    from slimkit.utils.distributed import is_main

    return is_main()


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Progress of one operation of `total` steps (None: unknown), advanced with `update(n)`.

    Use it as a context manager, or call `close()`; a log-mode operation whose count never reached
    a logged line writes one closing line when it ends normally (after `LOG_DELAY_S`). `update` may
    be called from several threads.
    """

    def __init__(
        self, total: int | None, desc: str, *, mode: str = "auto", unit: str = "it", log_lines: int = LOG_LINES,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.mode = resolve_mode(mode)
        self.total = total if total is None or total > 0 else None
        self.desc, self.unit, self.log_lines = desc, unit, max(int(log_lines), 0)
        self.count = 0
        self.lines = 0  # log lines written
        self._logged_bucket = 0
        self._logged_count = 0
        self._write = write or log.info
        self._start = time.perf_counter()
        self._lock = threading.Lock()
        self._closed = False
        main = _is_main()
        self._bar = (
            tqdm(total=self.total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
            if self.mode == "bar" and main else None
        )
        self._log = self.mode == "log" and main and self.log_lines > 0

    # ---- updates ---------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        with self._lock:
            self.count += n
            if self._bar is not None:
                self._bar.update(n)
            elif self._log and self.total is not None and self._due():
                bucket = min(self.count, self.total) * self.log_lines // self.total
                if bucket > self._logged_bucket:
                    self._logged_bucket = bucket
                    self._emit()

    def iterate(self, iterable: Iterable[T]) -> Iterator[T]:
        """Yield the items of `iterable`, counting one step after each item is processed."""
        for item in iterable:
            yield item
            self.update()

    def close(self, finished: bool = True) -> None:
        """End the display; `finished=False` (an error) writes no closing line."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.close()
            elif (self._log and finished and self.count != self._logged_count and self.lines < self.log_lines
                  and self._due()):
                self._emit()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(finished=exc_type is None)

    # ---- log lines -------------------------------------------------------------------------
    def _due(self) -> bool:
        return time.perf_counter() - self._start >= LOG_DELAY_S

    def _emit(self) -> None:
        elapsed = format_seconds(time.perf_counter() - self._start)
        if self.total is None:
            line = f"{self.desc}: {self.count} {self.unit} done ({elapsed})"
        else:
            line = f"{self.desc}: {self.count}/{self.total} {self.unit} done ({self.count / self.total:.0%}, {elapsed})"
        self.lines += 1
        self._logged_count = self.count
        self._write(line)

    def write(self, message: str) -> None:
        """Print a line of the caller's own without breaking an active bar (nothing in 'none' mode)."""
        if self.mode == "none" or not _is_main():
            return
        if self.mode == "bar":
            tqdm.write(message, file=sys.stderr)
        else:
            self._write(message)


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str, mode: str = "auto", unit: str = "it",
    log_lines: int = LOG_LINES,
) -> Iterator[T]:
    """Iterate with a progress display (see the module docstring); `total` defaults to len(iterable).

    `log_lines=0` shows the bar only: for operations whose caller logs its own summary (a training
    epoch, the evaluation after it).
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    task = Progress(total, desc, mode=mode, unit=unit, log_lines=log_lines)
    finished = False
    try:
        yield from task.iterate(iterable)
        finished = True
    finally:
        task.close(finished)


def report(message: str, mode: str = "auto") -> None:
    """Print a summary line without breaking an active bar (rank 0 only under DDP)."""
    resolved = resolve_mode(mode)
    if resolved == "none" or not _is_main():
        return
    if resolved == "bar":
        tqdm.write(message, file=sys.stderr)
    else:
        log.info(message)
