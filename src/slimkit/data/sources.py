"""Readers for each dataset. None of them downloads anything: files come from Debian packages,
user folders, or are generated locally."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from slimkit.data.base import DatasetNotFoundError, TensorSplit

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def data_root() -> Path | None:
    """`$SLIMKIT_DATA`: the folder holding one sub-folder per dataset (fashion-mnist/, mnist/, ...)."""
    root = os.environ.get("SLIMKIT_DATA")
    return Path(root) if root else None


def cache_root() -> Path:
    return Path(os.environ.get("SLIMKIT_CACHE", Path.home() / ".cache" / "slimkit"))


def _candidate_dirs(name: str, data_dir: str | Path | None, system_dir: Path | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    dirs = []
    if data_root() is not None:
        dirs.append(data_root() / name)
    if system_dir is not None:
        dirs.append(system_dir)
    return dirs


def _find_idx_dir(dirs: list[Path]) -> Path | None:
    for folder in dirs:
        if all((folder / f).exists() or (folder / f"{f}.gz").exists() for f in IDX_FILES):
            return folder
    return None


def _missing_message(name: str, dirs: list[Path], needed: tuple[str, ...], how: str) -> str:
    looked = ", ".join(str(d) for d in dirs) or "(no folder: set SLIMKIT_DATA or pass data_dir)"
    return f"dataset '{name}' not found. Looked in: {looked}. Needed files: {', '.join(needed)}. {how}"


def _stage_idx_files(source: Path, staged_raw: Path) -> None:
    """Lay the IDX files out where torchvision's MNIST classes expect them (root/<Class>/raw/),
    un-gzipping once into the cache. Writes go through a temp file so concurrent ranks are safe."""
    staged_raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        target = staged_raw / name
        plain, packed = source / name, source / f"{name}.gz"
        src = plain if plain.exists() else packed
        if target.exists() and target.stat().st_mtime >= src.stat().st_mtime:
            continue
        fd, tmp = tempfile.mkstemp(dir=staged_raw, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as out, (gzip.open(src, "rb") if src is packed else open(src, "rb")) as inp:
            shutil.copyfileobj(inp, out)
        os.replace(tmp, target)


def _load_idx_dataset(name: str, tv_class: type, data_dir, system_dir, how: str) -> tuple[TensorSplit, TensorSplit]:
    dirs = _candidate_dirs(name, data_dir, system_dir)
    source = _find_idx_dir(dirs)
    if source is None:
        raise DatasetNotFoundError(_missing_message(name, dirs, tuple(f"{f}[.gz]" for f in IDX_FILES), how))
    staged = cache_root() / "idx" / name
    _stage_idx_files(source, staged / tv_class.__name__ / "raw")
    splits = []
    for train in (True, False):
        ds = tv_class(str(staged), train=train, download=False)
        splits.append(TensorSplit(ds.data.unsqueeze(1).contiguous(), ds.targets))
    return splits[0], splits[1]


def load_fashion_mnist(data_dir=None) -> tuple[TensorSplit, TensorSplit]:
    from torchvision.datasets import FashionMNIST

    how = (
        "Install them with `sudo apt-get install dataset-fashion-mnist` (or `make setup`), "
        "or put the IDX files in $SLIMKIT_DATA/fashion-mnist/."
    )
    return _load_idx_dataset("fashion-mnist", FashionMNIST, data_dir, SYSTEM_FASHION_MNIST, how)


def load_mnist(data_dir=None) -> tuple[TensorSplit, TensorSplit]:
    from torchvision.datasets import MNIST

    how = "Put the four MNIST IDX files in $SLIMKIT_DATA/mnist/ or pass data_dir."
    return _load_idx_dataset("mnist", MNIST, data_dir, None, how)


def load_digits() -> tuple[TensorSplit, TensorSplit]:
    """scikit-learn's 8x8 digits (1,797 images), with a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target
    )
    as_split = lambda x, y: TensorSplit(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y))
    return as_split(x_tr, y_tr), as_split(x_te, y_te)


def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> tuple[TensorSplit, TensorSplit]:
    """MNIST-1D generated locally by the mnist1d package (its default 4,000/1,000 split)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    saved_state = np.random.get_state()  # make_dataset reseeds numpy's global RNG
    try:
        generated = make_dataset(args)
    finally:
        np.random.set_state(saved_state)
    as_split = lambda x, y: TensorSplit(torch.from_numpy(x.astype(np.float32)).unsqueeze(1), torch.from_numpy(y))
    return as_split(generated["x"], generated["y"]), as_split(generated["x_test"], generated["y_test"])


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


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        try:
            entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        except Exception as exc:  # noqa: BLE001 - any parse failure means an unusable file
            raise ValueError(f"CIFAR batch file {path} is corrupt or not in the python format: {exc}") from exc
    data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(entry[label_key], dtype=np.int64)


def load_cifar(name: str, data_dir=None) -> tuple[TensorSplit, TensorSplit]:
    """CIFAR-10/100 from a folder in torchvision's layout (cifar-10-batches-py/ or cifar-100-python/)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    tv_class = CIFAR10 if name == "cifar10" else CIFAR100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    dirs = _candidate_dirs(name, data_dir, None)
    needed = [f"{tv_class.base_folder}/{f}" for f, _ in tv_class.train_list + tv_class.test_list]
    for root in dirs:
        if all((root / f).exists() for f in needed):
            break
    else:
        how = (
            f"Put the extracted python version of {name.upper()} (folder {tv_class.base_folder}/) "
            f"in $SLIMKIT_DATA/{name}/ or pass data_dir; slimkit never downloads it."
        )
        raise DatasetNotFoundError(_missing_message(name, dirs, tuple(needed), how))
    folder = root / tv_class.base_folder
    splits = []
    for file_list in (tv_class.train_list, tv_class.test_list):
        parts = [_read_cifar_batch(folder / f, label_key) for f, _ in file_list]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        splits.append(TensorSplit(torch.from_numpy(images), torch.from_numpy(labels)))
    return splits[0], splits[1]


def make_synthetic(
    num_train: int = 512, num_test: int = 256, shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, seed: int = 0
) -> tuple[TensorSplit, TensorSplit]:
    """Learnable toy images for tests: each class is a fixed smooth random template plus noise
    (smooth, so small random crops keep the class recognisable)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand((num_classes, shape[0], *(max(1, s // 4) for s in shape[1:])), generator=gen)
    mode = "bilinear" if len(shape) == 3 else "linear"
    templates = torch.nn.functional.interpolate(coarse, size=shape[1:], mode=mode, align_corners=False)

    def draw(n: int) -> TensorSplit:
        labels = torch.randint(num_classes, (n,), generator=gen)
        noisy = 0.6 * templates[labels] + 0.4 * torch.rand((n, *shape), generator=gen)
        return TensorSplit((noisy * 255).round().to(torch.uint8), labels)

    return draw(num_train), draw(num_test)
