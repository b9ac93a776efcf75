"""Atomic file writes: a crash or kill mid-write must never leave a half-written checkpoint,
model or metrics file behind (write to a temp file in the same folder, fsync, `os.replace`)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` then atomically move the temp file onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
