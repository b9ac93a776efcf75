"""Readers for each dataset. None of them downloads anything: files come from Debian packages,
user folders, or are generated locally."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from slimkit.data.base import DatasetNotFoundError, TensorSplit
from slimkit.data.cifar import read_cifar_batch
from slimkit.data.idx import IDX_FILES, find_idx_dir, read_idx_splits

log = logging.getLogger("slimkit")
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_CLASSES = 10  # MNIST and Fashion-MNIST


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


def _missing_message(name: str, dirs: list[Path], needed: tuple[str, ...], how: str) -> str:
    looked = ", ".join(str(d) for d in dirs) or "(no folder: set SLIMKIT_DATA or pass data_dir)"
    return f"dataset '{name}' not found. Looked in: {looked}. Needed files: {', '.join(needed)}. {how}"


def _load_idx_dataset(name: str, data_dir, system_dir: Path | None, how: str) -> tuple[TensorSplit, TensorSplit]:
    dirs = _candidate_dirs(name, data_dir, system_dir)
    source = find_idx_dir(dirs)
    if source is None:
        raise DatasetNotFoundError(_missing_message(name, dirs, tuple(f"{f}[.gz]" for f in IDX_FILES), how))
    log.info("%s: reading the IDX files in %s", name, source.resolve())
    return read_idx_splits(source, cache_root() / "idx" / name, MNIST_CLASSES)


def load_fashion_mnist(data_dir=None) -> tuple[TensorSplit, TensorSplit]:
    how = (
        "Install them with `sudo apt-get install dataset-fashion-mnist` (or `make setup`), "
        "or put the IDX files in $SLIMKIT_DATA/fashion-mnist/."
    )
    return _load_idx_dataset("fashion-mnist", data_dir, SYSTEM_FASHION_MNIST, how)


def load_mnist(data_dir=None) -> tuple[TensorSplit, TensorSplit]:
    how = "Put the four MNIST IDX files in $SLIMKIT_DATA/mnist/ or pass data_dir."
    return _load_idx_dataset("mnist", data_dir, None, how)


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
    log.info("%s: reading the python batches in %s", name, folder.resolve())
    num_classes = 10 if name == "cifar10" else 100
    splits = []
    for file_list in (tv_class.train_list, tv_class.test_list):
        parts = [read_cifar_batch(folder / f, label_key, num_classes) for f, _ in file_list]
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
