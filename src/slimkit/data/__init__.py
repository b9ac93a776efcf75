"""Datasets held in memory, a registry of names, and fast batch loaders that yield indices."""

from slimkit.data.base import DataSplits, DatasetFileError, DatasetInfo, DatasetNotFoundError, TensorSplit
from slimkit.data.loader import Augmentation, Batch, BatchLoader
from slimkit.data.registry import DATASETS, Loaders, available_datasets, get_spec, load_dataset, make_loaders

__all__ = [
    "DATASETS", "Augmentation", "Batch", "BatchLoader", "DataSplits", "DatasetFileError", "DatasetInfo", "DatasetNotFoundError",
    "Loaders", "TensorSplit", "available_datasets", "get_spec", "load_dataset", "make_loaders",
]
