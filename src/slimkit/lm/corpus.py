"""Offline text corpora for language models, split by file into train / val / test.

The built-in corpus is the Python standard library of the running interpreter
(``sysconfig.get_paths()["stdlib"]``, tens of MB of real text that needs no download); any folder
of text files is a corpus the same way (`folder_corpus`). Each file goes to one split, chosen by a
hash of its relative path and a seed: the split of a file never depends on which other files
exist, so it is the same on every machine, and no text is shared between splits.

`CorpusInfo` is what a run records: the Python version, the split fractions and seed, the file
counts and bytes per split, and a SHA-256 of the sorted file list (relative path and size of each
file), so two runs on different interpreters can tell whether they saw the same text.
"""

from __future__ import annotations

import fnmatch
import hashlib
import platform
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")
STDLIB_EXCLUDE = ("site-packages/*", "dist-packages/*", "*/__pycache__/*", "__pycache__/*")


@dataclass(frozen=True)
class CorpusInfo:
    """What identifies a corpus in run metadata (`to_dict` is JSON-ready)."""

    name: str
    root: str
    python_version: str
    suffixes: tuple[str, ...]
    fractions: tuple[float, float, float]
    seed: int
    files: dict[str, int]
    bytes: dict[str, int]
    files_sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def split_of(relative_path: str, fractions: Sequence[float] = (0.9, 0.05, 0.05), seed: int = 0) -> str:
    """The split of one file: a uniform number from SHA-256(seed, path) against the cumulative fractions."""
    point = int.from_bytes(hashlib.sha256(f"{seed}\0{relative_path}".encode()).digest()[:8], "big") / 2**64
    bound = 0.0
    for split, fraction in zip(SPLITS, fractions):
        bound += fraction
        if point < bound:
            return split
    return SPLITS[-1]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test) summing to 1, got {fractions}")
    return fractions  # type: ignore[return-value]


@dataclass(frozen=True)
class TextCorpus:
    """Files of a folder, split by file; paths are POSIX paths relative to `root`, sorted."""

    root: Path
    splits: dict[str, tuple[str, ...]]
    info: CorpusInfo

    def paths(self, split: str) -> tuple[str, ...]:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return self.splits[split]

    def texts(self, split: str) -> Iterator[str]:
        """The text of every file of `split`, in path order (UTF-8; undecodable bytes become U+FFFD)."""
        for relative in self.paths(split):
            yield (self.root / relative).read_text(encoding="utf-8", errors="replace")


def _list_files(root: Path, suffixes: tuple[str, ...], exclude: Sequence[str]) -> list[tuple[str, int]]:
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.suffix not in suffixes or any(fnmatch.fnmatchcase(relative, pattern) for pattern in exclude):
            continue
        if path.is_file() and not path.is_symlink():
            found.append((relative, path.stat().st_size))
    return sorted(found)


def folder_corpus(
    root: str | Path, *, suffixes: Sequence[str] = (".txt",), exclude: Sequence[str] = (),
    fractions: Sequence[float] = (0.9, 0.05, 0.05), seed: int = 0, name: str = "folder",
) -> TextCorpus:
    """Every file under `root` whose suffix is in `suffixes` and whose relative path matches no
    `exclude` pattern (fnmatch), split by `split_of`. Symbolic links are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"corpus root {str(root)!r} is not a folder")
    suffixes, fractions = tuple(suffixes), _check_fractions(fractions)
    files = _list_files(root, suffixes, exclude)
    if not files:
        raise ValueError(f"no {'/'.join(suffixes)} files under {str(root)!r}")
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    sizes = dict.fromkeys(SPLITS, 0)
    for relative, size in files:
        split = split_of(relative, fractions, seed)
        splits[split].append(relative)
        sizes[split] += size
    listing = "".join(f"{relative}\t{size}\n" for relative, size in files)
    info = CorpusInfo(
        name=name, root=str(root), python_version=platform.python_version(), suffixes=suffixes,
        fractions=fractions, seed=seed, files={split: len(paths) for split, paths in splits.items()}, bytes=sizes,
        files_sha256=hashlib.sha256(listing.encode()).hexdigest(),
    )
    return TextCorpus(root, {split: tuple(paths) for split, paths in splits.items()}, info)


def stdlib_corpus(*, fractions: Sequence[float] = (0.9, 0.05, 0.05), seed: int = 0) -> TextCorpus:
    """The ``.py`` sources of this interpreter's standard library (installed packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return folder_corpus(
        root, suffixes=(".py",), exclude=STDLIB_EXCLUDE, fractions=fractions, seed=seed, name="python-stdlib"
    )
