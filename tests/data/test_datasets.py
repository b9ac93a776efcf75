import pickle

import pytest
import torch

from slimkit.data import DATASETS, DatasetNotFoundError, available_datasets, load_dataset
from slimkit.data.sources import SYSTEM_FASHION_MNIST

from .fixtures import write_cifar, write_idx


def test_fashion_mnist_real_files():
    if not SYSTEM_FASHION_MNIST.exists():
        pytest.fail("Fashion-MNIST is missing: `make setup` installs dataset-fashion-mnist")
    splits = load_dataset("fashion-mnist")
    assert splits.train.inputs.shape == (60000, 1, 28, 28) and splits.train.inputs.dtype == torch.uint8
    assert splits.test.inputs.shape == (10000, 1, 28, 28)
    assert torch.bincount(splits.test.targets).tolist() == [1000] * 10
    assert splits.info.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert splits.info.std[0] == pytest.approx(0.3530, abs=1e-3)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_user_folder(tmp_path, monkeypatch, gz):
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))
    write_idx(tmp_path / "data" / "mnist", gz=gz)
    monkeypatch.setenv("SLIMKIT_DATA", str(tmp_path / "data"))
    splits = load_dataset("mnist")
    assert splits.train.inputs.shape == (20, 1, 28, 28) and len(splits.test) == 10


def test_missing_dataset_names_files_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMKIT_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist")
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "mnist") in message
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


@pytest.mark.parametrize("name,classes,train_files", [("cifar10", 10, 5), ("cifar100", 100, 1)])
def test_cifar_from_user_folder(tmp_path, name, classes, train_files):
    write_cifar(tmp_path, name, per_file=4)
    splits = load_dataset(name, data_dir=tmp_path)
    assert splits.info.input_shape == (3, 32, 32) and splits.info.num_classes == classes
    assert len(splits.train) == 4 * train_files and len(splits.test) == 4


def test_cifar_refuses_code_in_pickles(tmp_path):
    root = write_cifar(tmp_path, "cifar10")
    evil = root / "cifar-10-batches-py" / "data_batch_1"
    evil.write_bytes(pickle.dumps({"data": print, "labels": []}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        load_dataset("cifar10", data_dir=root)


def test_cifar_missing_lists_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py/data_batch_1"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize(
    "name,shape,n_train,n_test",
    [("digits", (1, 8, 8), 1437, 360), ("mnist1d", (1, 40), 4000, 1000), ("synthetic", (1, 28, 28), 512, 256)],
)
def test_generated_datasets(name, shape, n_train, n_test):
    splits = load_dataset(name)
    assert splits.info.input_shape == shape
    assert (len(splits.train), len(splits.test)) == (n_train, n_test)
    assert splits.train.targets.min() >= 0 and splits.train.targets.max() < splits.info.num_classes


def test_validation_split_is_disjoint_and_seeded():
    a = load_dataset("synthetic", val_fraction=0.25, split_seed=3)
    b = load_dataset("synthetic", val_fraction=0.25, split_seed=3)
    assert len(a.val) == 128 and len(a.train) == 384
    assert torch.equal(a.val.inputs, b.val.inputs)
    train_rows = {bytes(x.numpy()) for x in a.train.inputs}
    assert not any(bytes(x.numpy()) in train_rows for x in a.val.inputs)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("synthetic", val_fraction=1.0)


def test_registry_lists_every_dataset():
    assert set(available_datasets()) == set(DATASETS) >= {
        "fashion-mnist", "mnist", "digits", "mnist1d", "cifar10", "cifar100", "synthetic"
    }
