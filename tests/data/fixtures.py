"""Tiny on-disk copies of user-folder datasets in their real formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(
    folder: Path, n_train: int = 20, n_test: int = 10, size: int = 28, gz: bool = False, seed: int = 0
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        payloads = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 0x803, n, size, size) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 0x801, n) + labels.tobytes(),
        }
        for name, data in payloads.items():
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (folder / name).write_bytes(data)
    return folder


def write_cifar(root: Path, name: str = "cifar10", per_file: int = 4) -> Path:
    from torchvision.datasets import CIFAR10, CIFAR100

    tv = CIFAR10 if name == "cifar10" else CIFAR100
    key = "labels" if name == "cifar10" else "fine_labels"
    classes = 10 if name == "cifar10" else 100
    folder = root / tv.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for file_name, _ in tv.train_list + tv.test_list:
        entry = {
            "data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
            key: rng.integers(0, classes, per_file).tolist(),
        }
        with open(folder / file_name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    return root
