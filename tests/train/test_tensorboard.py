import csv
import sys

import pytest

from slimkit.cli import build_parser, main
from slimkit.runs.config import RunConfig, make_config
from slimkit.runs import train_run
from slimkit.train.tensorboard import TensorBoardUnavailable

SETTINGS = dict(model="lenet5", data="synthetic", epochs=2, batch_size=64, progress="none", method="mest-ems",
                sparsity=0.9)
EXPECTED = {  # tag -> history.csv column
    "loss/train": "train_loss", "loss/test": "test_loss", "accuracy/train": "train_acc", "accuracy/test": "test_acc",
    "lr": "lr", "sparsity/density": "density", "masks/weights_moved": "weights_moved", "masks/moved/fc1": "moved/fc1",
}


def test_scalars_per_epoch_match_the_history(tmp_path):
    pytest.importorskip("tensorboard")  # dev extra
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train_run(make_config({**SETTINGS, "tensorboard": True}), out)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    with open(out / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert set(EXPECTED) <= set(events.Tags()["scalars"])
    for tag, column in EXPECTED.items():
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2], tag
        assert [s.value for s in scalars] == pytest.approx([float(row[column]) for row in history], rel=1e-6), tag


def test_off_by_default_and_flag():
    assert RunConfig().tensorboard is False
    args = build_parser().parse_args(["train", "--tensorboard"])
    assert args.tensorboard is True


def test_missing_package_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    out = tmp_path / "run"
    with pytest.raises(TensorBoardUnavailable, match=r"pip install tensorboard.*pip install slimkit\[tensorboard\]"):
        train_run(make_config({**SETTINGS, "tensorboard": True}), out)
    assert not out.exists()  # nothing written, nothing trained
    argv = ["train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--tensorboard", "--out", str(out)]
    assert main(argv) == 2
    assert "pip install tensorboard" in capsys.readouterr().err
    assert not out.exists()
