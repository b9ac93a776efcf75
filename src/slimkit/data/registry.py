"""The dataset registry: names users type on the command line, mapped to readers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from slimkit.data import sources
from slimkit.data.base import DataSplits, DatasetInfo, TensorSplit, channel_stats, check_labels
from slimkit.data.loader import Augmentation, BatchLoader

Reader = Callable[..., tuple[TensorSplit, TensorSplit]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    read: Reader  # read(data_dir) -> (train, test)
    num_classes: int
    augmentation: Augmentation


def _ignore_dir(fn: Callable[[], tuple[TensorSplit, TensorSplit]]) -> Reader:
    return lambda data_dir=None: fn()


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "fashion-mnist",
            "Fashion-MNIST 28x28 grey, 10 classes, 60k/10k (Debian dataset-fashion-mnist)",
            sources.load_fashion_mnist,
            10,
            Augmentation(crop_padding=2, hflip=True),
        ),
        DatasetSpec(
            "mnist",
            "MNIST 28x28 grey, 10 classes, 60k/10k (IDX files in a user folder)",
            sources.load_mnist,
            10,
            Augmentation(crop_padding=2),  # no flips: mirrored digits are other symbols
        ),
        DatasetSpec(
            "digits", "scikit-learn digits 8x8 grey, 10 classes, 1437/360", _ignore_dir(sources.load_digits), 10,
            Augmentation(),
        ),
        DatasetSpec(
            "mnist1d", "MNIST-1D signals of length 40, 10 classes, 4000/1000 (generated)",
            _ignore_dir(sources.load_mnist1d), 10, Augmentation(),
        ),
        DatasetSpec(
            "cifar10", "CIFAR-10 32x32 RGB, 10 classes, 50k/10k (user folder, torchvision layout)",
            partial(sources.load_cifar, "cifar10"), 10, Augmentation(crop_padding=4, hflip=True),
        ),
        DatasetSpec(
            "cifar100", "CIFAR-100 32x32 RGB, 100 classes, 50k/10k (user folder, torchvision layout)",
            partial(sources.load_cifar, "cifar100"), 100, Augmentation(crop_padding=4, hflip=True),
        ),
        DatasetSpec(
            "synthetic", "toy 28x28 grey images, 10 classes, 512/256 (for tests)",
            _ignore_dir(sources.make_synthetic), 10, Augmentation(crop_padding=2),
        ),
    ]
}


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset '{name}'; available: {', '.join(available_datasets())}") from None


def load_dataset(name: str, *, data_dir=None, val_fraction: float = 0.0, split_seed: int = 0) -> DataSplits:
    """Load a dataset into memory; optionally hold out `val_fraction` of the training set.

    Normalisation statistics are computed on the whole training split, so they do not depend on
    the validation split.
    """
    spec = get_spec(name)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train, test = spec.read(data_dir)
    for split_name, split in (("training", train), ("test", test)):  # every reader, whatever it checked itself
        check_labels(split.targets, spec.num_classes, f"dataset '{name}' ({split_name} split)")
    mean, std = channel_stats(train)
    info = DatasetInfo(name, tuple(train.inputs.shape[1:]), spec.num_classes, mean, std)
    val = None
    if val_fraction > 0:
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
        n_val = max(1, round(val_fraction * len(train)))
        val, train = train.subset(perm[:n_val].sort().values), train.subset(perm[n_val:].sort().values)
    return DataSplits(info=info, train=train, test=test, val=val)


@dataclass
class Loaders:
    train: BatchLoader
    test: BatchLoader
    val: BatchLoader | None = None


def make_loaders(
    splits: DataSplits,
    batch_size: int,
    *,
    eval_batch_size: int = 1000,
    augment: bool = True,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Loaders:
    """Shuffled (and augmented, if the dataset has augmentation) training loader, plain eval loaders."""
    aug = get_spec(splits.info.name).augmentation if augment else Augmentation()
    train = BatchLoader(
        splits.train, splits.info, batch_size, shuffle=True, augmentation=aug, seed=seed,
        rank=rank, world_size=world_size,
    )
    make_eval = lambda split: BatchLoader(split, splits.info, eval_batch_size)
    return Loaders(train=train, test=make_eval(splits.test), val=make_eval(splits.val) if splits.val else None)

