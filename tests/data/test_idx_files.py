"""IDX datasets from user folders: the unpacked cache follows the source, and every malformed file
ends in one error naming it (a ValueError, so the CLI prints one line)."""

import logging
import os
import struct

import pytest
import torch

from slimkit.cli import main
from slimkit.data import DatasetFileError, load_dataset

from .fixtures import write_idx

DAY = 24 * 3600


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))


def _age(folder, seconds):
    """Make every file in `folder` look `seconds` older than now."""
    for path in folder.iterdir():
        stamp = path.stat().st_mtime - seconds
        os.utime(path, (stamp, stamp))


def _same(a, b):
    return torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.train.targets, b.train.targets)


@pytest.mark.parametrize("gz", [False, True])
def test_an_older_second_folder_gives_its_own_data(tmp_path, monkeypatch, gz, caplog):
    folder_a = write_idx(tmp_path / "a", gz=gz, seed=1)
    folder_b = write_idx(tmp_path / "b", gz=gz, seed=2)
    _age(folder_b, DAY)
    from_a = load_dataset("mnist", data_dir=folder_a)
    with caplog.at_level(logging.INFO, logger="slimkit"):
        from_b = load_dataset("mnist", data_dir=folder_b)
    assert not _same(from_a, from_b)
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "fresh-cache"))
    assert _same(from_b, load_dataset("mnist", data_dir=folder_b))
    assert str(folder_b.resolve()) in caplog.text  # the log says which folder was read


def test_a_file_replaced_by_an_older_copy_is_read_again(tmp_path, monkeypatch):
    folder = write_idx(tmp_path / "data", gz=True, seed=1)
    first = load_dataset("mnist", data_dir=folder)
    write_idx(tmp_path / "data", gz=True, seed=2)  # same paths, new content, restored with an old mtime
    _age(folder, DAY)
    second = load_dataset("mnist", data_dir=folder)
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "fresh-cache"))
    assert not _same(first, second) and _same(second, load_dataset("mnist", data_dir=folder))


def _images(n, size=28, declared=None):
    return struct.pack(">IIII", 0x803, n if declared is None else declared, size, size) + bytes(n * size * size)


def _labels(values, declared=None):
    return struct.pack(">II", 0x801, len(values) if declared is None else declared) + bytes(values)


@pytest.mark.parametrize(
    "file_name,payload,message",
    [
        ("train-images-idx3-ubyte", _images(5, declared=20), r"is truncated: its header says 20 examples"),
        ("train-images-idx3-ubyte", _images(0), r"holds no data: .* \(0 examples\)"),
        ("train-labels-idx1-ubyte", _labels([], declared=0), r"holds no data"),
        ("train-labels-idx1-ubyte", _labels([1] * 20)[:10], r"is truncated: its header says 20 examples"),
        ("train-labels-idx1-ubyte", _labels([1] * 5) + bytes(3), r"has 3 bytes more than its header"),
        ("train-labels-idx1-ubyte", _labels([3] * 19 + [10]), r"label 10 of example 19 is outside 0..9"),
        ("train-labels-idx1-ubyte", _labels([1] * 19), r"holds 20 images but .*train-labels-idx1-ubyte holds 19"),
        ("train-labels-idx1-ubyte", b"\x00\x00", r"is not an IDX file of unsigned bytes with 1 dimension"),
        ("train-images-idx3-ubyte", _labels([1] * 20), r"is not an IDX file of unsigned bytes with 3 dimension"),
        ("train-images-idx3-ubyte", struct.pack(">III", 0x803, 20, 28), r"ends inside its 16-byte header"),
        ("t10k-images-idx3-ubyte", _images(10, size=32), r"training images .* are \(28, 28\) but test images are \(32, 32\)"),
    ],
    ids=["truncated-images", "no-images", "no-labels", "truncated-labels", "extra-bytes", "label-too-big", "count-mismatch", "no-header", "wrong-magic", "cut-header", "test-size-differs"],
)
def test_a_malformed_idx_file_is_named_at_load(tmp_path, file_name, payload, message):
    folder = write_idx(tmp_path / "mnist", n_train=20, n_test=10)
    (folder / file_name).write_bytes(payload)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset("mnist", data_dir=folder)
    assert isinstance(err.value, DatasetFileError) and str(folder) in str(err.value)


def test_a_cut_gzip_file_is_named(tmp_path):
    folder = write_idx(tmp_path / "mnist", gz=True)
    packed = folder / "train-images-idx3-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:200])
    with pytest.raises(DatasetFileError, match=f"cannot unpack {packed}"):
        load_dataset("mnist", data_dir=folder)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no half-written copy left


def test_a_folder_in_place_of_a_file_is_named(tmp_path):
    folder = write_idx(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    (folder / "t10k-labels-idx1-ubyte").mkdir()
    with pytest.raises(DatasetFileError, match="cannot read IDX file .*t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=folder)


def test_the_cli_prints_a_bad_file_as_one_line(tmp_path, capsys):
    folder = write_idx(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_labels([255] * 10))
    argv = ["train", "--data", "mnist", "--data-dir", str(folder), "--epochs", "1", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("slimkit: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "t10k-labels-idx1-ubyte: label 255 of example 0 is outside 0..9" in err
