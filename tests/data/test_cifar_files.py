"""CIFAR batches from a user folder: a crafted or damaged batch file ends in one error naming it,
and every dataset's labels are range-checked at load."""

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from slimkit.data import DATASETS, DatasetFileError, TensorSplit, load_dataset

from .fixtures import write_cifar

PIXELS = np.zeros((4, 3072), dtype=np.uint8)


@pytest.mark.parametrize(
    "entry,message",
    [
        ([PIXELS, [0, 1, 2, 3]], r"holds a list, not a dict with 'data' and 'labels'"),
        ({"data": PIXELS}, r"has no 'labels' entry \(keys: 'data'\)"),
        ({"data": PIXELS, "labels": [0, 1, 2, 10]}, r"label 10 of example 3 is outside 0..9"),
        ({"data": PIXELS, "labels": [0, -1, 2, 3]}, r"label -1 of example 1 is outside 0..9"),
        ({"data": PIXELS, "labels": [0, 1, 2]}, r"'data' holds 12288 values but 3 labels need 9216"),
        ({"data": PIXELS[:, :100], "labels": [0, 1, 2, 3]}, r"'data' holds 400 values but 4 labels need 12288"),
        ({"data": PIXELS, "labels": []}, r"'labels' is empty \(0 examples\)"),
        ({"data": PIXELS, "labels": ["a", "b", "c", "d"]}, r"'labels' holds <U1 values, not integers"),
        ({"data": PIXELS.astype(np.int64) + 300, "labels": [0, 1, 2, 3]}, r"pixel values must be 0..255"),
        ({"data": PIXELS, "labels": [[0, 1], [2]]}, r"'labels' is not an array"),
    ],
)
def test_a_bad_cifar_batch_is_named_at_load(tmp_path, entry, message):
    root = write_cifar(tmp_path, "cifar10")
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(ValueError, match=message) as err:
        load_dataset("cifar10", data_dir=root)
    assert isinstance(err.value, DatasetFileError) and f"CIFAR batch file {batch}" in str(err.value)


def test_cifar100_labels_are_checked_against_100_classes(tmp_path):
    root = write_cifar(tmp_path, "cifar100")
    batch = root / "cifar-100-python" / "test"
    batch.write_bytes(pickle.dumps({"data": PIXELS, "fine_labels": [99, 100, 0, 0]}, protocol=2))
    with pytest.raises(DatasetFileError, match=rf"{batch}: label 100 of example 1 is outside 0..99"):
        load_dataset("cifar100", data_dir=root)


def test_a_folder_in_place_of_a_batch_is_named(tmp_path):
    root = write_cifar(tmp_path, "cifar10")
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.unlink()
    batch.mkdir()
    with pytest.raises(DatasetFileError, match=f"cannot read CIFAR batch file {batch}"):
        load_dataset("cifar10", data_dir=root)


def test_every_reader_s_labels_are_range_checked(monkeypatch):
    def read_with_a_bad_label(data_dir=None):
        inputs = torch.zeros((3, 1, 28, 28), dtype=torch.uint8)
        return TensorSplit(inputs, torch.tensor([0, 1, 2])), TensorSplit(inputs, torch.tensor([0, 12, 1]))

    monkeypatch.setitem(DATASETS, "synthetic", dataclasses.replace(DATASETS["synthetic"], read=read_with_a_bad_label))
    with pytest.raises(DatasetFileError, match=r"dataset 'synthetic' \(test split\): label 12 of example 1"):
        load_dataset("synthetic")
