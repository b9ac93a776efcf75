"""IDX files, the format of the MNIST family: find them in a folder, unpack `.gz` copies once into
a cache keyed by the source file's identity, and parse them with every size checked, so a bad
file is reported by name at load time instead of failing (or silently training) later."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from slimkit.data.base import DatasetFileError, TensorSplit, check_labels

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_UNSIGNED_BYTE = 0x08  # the IDX type code of uint8 data, the only type MNIST-style files use


def find_idx_dir(dirs: list[Path]) -> Path | None:
    """The first folder holding all four IDX files (each plain or gzipped)."""
    for folder in dirs:
        if all((folder / f).exists() or (folder / f"{f}.gz").exists() for f in IDX_FILES):
            return folder
    return None


def source_identity(path: Path) -> str:
    """A key that changes whenever the file behind `path` may have changed: its resolved path,
    size, device, inode and mtime in nanoseconds. Another folder, a replaced file or an older
    copy all give another key, so a cached unpacked copy is never reused for the wrong source."""
    resolved = path.resolve()
    st = resolved.stat()
    ident = f"{resolved}\0{st.st_size}\0{st.st_dev}\0{st.st_ino}\0{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def _unpack_once(packed: Path, cache_dir: Path) -> Path:
    """The un-gzipped copy of `packed` in `cache_dir`, made on first use. Written through a temp
    file and os.replace, so concurrent ranks never read a half-written copy."""
    target = cache_dir / f"{packed.name[: -len('.gz')]}.{source_identity(packed)}"
    if target.exists():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise _cache_error(packed, cache_dir, exc) from None
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(packed, "rb") as inp:
            while chunk := _read_chunk(inp, packed):
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise _cache_error(packed, cache_dir, exc) from None
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _read_chunk(inp: gzip.GzipFile, packed: Path) -> bytes:
    try:
        return inp.read(1 << 20)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DatasetFileError(f"cannot unpack {packed}: {exc}; copy the file again") from None


def _cache_error(packed: Path, cache_dir: Path, exc: OSError) -> DatasetFileError:
    return DatasetFileError(
        f"cannot write the unpacked copy of {packed} to {cache_dir}: {exc.strerror or exc}; "
        "free space there or point SLIMKIT_CACHE at another folder"
    )


def _read_bytes(folder: Path, name: str, cache_dir: Path) -> tuple[np.ndarray, Path]:
    """The raw bytes of IDX file `name` in `folder` (plain, or gzipped through the cache), and the
    user's file they came from (the one error messages name)."""
    plain, packed = folder / name, folder / f"{name}.gz"
    source = plain if plain.exists() else packed
    try:
        readable = source if source is plain else _unpack_once(packed, cache_dir)
        return np.fromfile(readable, dtype=np.uint8), source
    except OSError as exc:
        raise DatasetFileError(f"cannot read IDX file {source}: {exc.strerror or exc}") from None


def parse_idx(raw: np.ndarray, ndim: int, origin: Path) -> np.ndarray:
    """The array an IDX file of unsigned bytes with `ndim` dimensions holds, after checking its
    magic number, that it holds at least one example and that the data is exactly as long as the
    header says (a truncated copy would otherwise fail deep inside a reshape, or train on less)."""
    header_len = 4 + 4 * ndim
    magic = raw[:4].tolist()
    if len(magic) < 4 or magic[:3] != [0, 0, _UNSIGNED_BYTE] or magic[3] != ndim:
        raise DatasetFileError(
            f"{origin} is not an IDX file of unsigned bytes with {ndim} dimension(s) "
            f"(it starts with {bytes(magic).hex() or 'nothing'}, expected 0000080{ndim})"
        )
    if raw.size < header_len:
        raise DatasetFileError(f"{origin} is truncated: it ends inside its {header_len}-byte header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i].tobytes(), "big") for i in range(ndim))
    if 0 in dims:
        count = " (0 examples)" if dims[0] == 0 else ""
        raise DatasetFileError(f"{origin} holds no data: its header gives the shape {dims}{count}")
    expected, found = math.prod(dims), raw.size - header_len
    if found < expected:
        raise DatasetFileError(
            f"{origin} is truncated: its header says {dims[0]} examples of shape {dims[1:] or '()'} "
            f"({expected} bytes) but only {found} bytes follow; copy the file again"
        )
    if found > expected:
        raise DatasetFileError(
            f"{origin} has {found - expected} bytes more than its header announces "
            f"({dims[0]} examples of shape {dims[1:] or '()'}); it is not a valid IDX file"
        )
    return raw[header_len:].reshape(dims)


def read_idx_splits(folder: Path, cache_dir: Path, num_classes: int) -> tuple[TensorSplit, TensorSplit]:
    """The train (`train-*`) and test (`t10k-*`) splits in `folder`, every file checked: sizes,
    images and labels of equal count, labels below `num_classes`, one image shape for both."""
    splits = []
    for prefix in ("train", "t10k"):
        raw_images, images_file = _read_bytes(folder, f"{prefix}-images-idx3-ubyte", cache_dir)
        raw_labels, labels_file = _read_bytes(folder, f"{prefix}-labels-idx1-ubyte", cache_dir)
        images, labels = parse_idx(raw_images, 3, images_file), parse_idx(raw_labels, 1, labels_file)
        if len(images) != len(labels):
            raise DatasetFileError(
                f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels; "
                "the two files must come from the same release"
            )
        check_labels(labels, num_classes, str(labels_file))
        splits.append(TensorSplit(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    train, test = splits
    if train.inputs.shape[1:] != test.inputs.shape[1:]:
        raise DatasetFileError(
            f"training images in {folder} are {tuple(train.inputs.shape[2:])} but test images are "
            f"{tuple(test.inputs.shape[2:])}; both splits must have one image size"
        )
    return train, test
