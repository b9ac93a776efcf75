"""CIFAR-10/100's python batches: pickles from a user-supplied folder, read through an allow-list
unpickler and checked entry by entry, so a crafted or damaged file ends in one message naming it
(never code execution, never a KeyError or IndexError later in training)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from slimkit.data.base import DatasetFileError, check_labels

PIXELS_PER_IMAGE = 3 * 32 * 32


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles; a user-supplied pickle must not run code, so only the
    globals needed to rebuild numpy arrays are allowed."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except OSError as exc:
        raise DatasetFileError(f"cannot read CIFAR batch file {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many types; all mean an unusable file
        raise DatasetFileError(f"CIFAR batch file {path} is corrupt or not in the python format: {exc}") from exc


def _integer_array(value: object, path: Path, key: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise DatasetFileError(f"CIFAR batch file {path}: '{key}' is not an array ({exc})") from None
    if array.size == 0:
        raise DatasetFileError(f"CIFAR batch file {path}: '{key}' is empty (0 examples)")
    if array.dtype.kind not in "iu":
        raise DatasetFileError(f"CIFAR batch file {path}: '{key}' holds {array.dtype} values, not integers")
    return array


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one batch file, after checking it is a
    dict with both entries, pixels in 0..255, one label per image and labels below `num_classes`."""
    entry = _unpickle(path)
    if not isinstance(entry, dict):
        raise DatasetFileError(
            f"CIFAR batch file {path} holds a {type(entry).__name__}, not a dict with 'data' and '{label_key}'"
        )
    missing = [key for key in ("data", label_key) if key not in entry]
    if missing:
        found = ", ".join(repr(k) for k in entry) or "none"
        raise DatasetFileError(f"CIFAR batch file {path} has no {' or '.join(map(repr, missing))} entry (keys: {found})")
    data = _integer_array(entry["data"], path, "data")
    labels = _integer_array(entry[label_key], path, label_key).reshape(-1)
    if data.size != len(labels) * PIXELS_PER_IMAGE:
        raise DatasetFileError(
            f"CIFAR batch file {path}: 'data' holds {data.size} values but {len(labels)} labels need "
            f"{len(labels) * PIXELS_PER_IMAGE} ({PIXELS_PER_IMAGE} per 32x32 RGB image)"
        )
    if data.min() < 0 or data.max() > 255:
        raise DatasetFileError(f"CIFAR batch file {path}: pixel values must be 0..255, found {data.min()}..{data.max()}")
    check_labels(labels, num_classes, f"CIFAR batch file {path}")
    return data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32), labels.astype(np.int64)
