"""Crafted or damaged checkpoints: every field the Trainer restores is checked, so a bad file is
one CheckpointError naming the file and the field, never a TypeError or a run at a nonsense epoch."""

import pytest
import torch

from slimkit.runs import build_trainer
from slimkit.runs.config import make_config
from slimkit.train import CheckpointError, load_checkpoint

SETTINGS = {"model": "lenet300", "data": "synthetic", "epochs": 2, "batch_size": 256, "progress": "none"}


def _trainer(out, **overrides):
    trainer, _ = build_trainer(make_config({**SETTINGS, **overrides}), out)
    return trainer


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    """The state of a real checkpoint after one of two epochs."""
    out = tmp_path_factory.mktemp("run")
    trainer = _trainer(out, epochs=1)
    trainer.fit()
    return torch.load(out / "checkpoint.pt", weights_only=True)


def _write(tmp_path, state, **changes):
    path = tmp_path / "checkpoint.pt"
    torch.save({**state, **changes}, path)
    return path


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"epoch": -1}, "'epoch' must be a whole number >= 0, got -1"),
        ({"epoch": "1"}, "'epoch' must be a whole number"),
        ({"epoch": 1.0}, "'epoch' must be a whole number"),
        ({"epoch": True}, "'epoch' must be a whole number"),
        ({"global_step": -5}, "'global_step'"),
        ({"model": [1, 2]}, "'model' must map parameter names to tensors"),
        ({"optimizer": {"state": {}}}, "'optimizer' must be an optimizer state dict"),
        ({"rng": torch.zeros(3)}, "'rng' must be a 1-D uint8 tensor"),
        ({"callbacks": []}, "'callbacks' must map"),
        ({"history": "rows"}, "'history' must be a list of 1 to epoch=1 rows, got str"),
        ({"history": []}, "'history' must be a list of 1 to epoch=1 rows, got 0"),
        ({"history": [{"epoch": 1}]}, "history row 1 must hold numbers for epoch, test_loss, test_acc"),
        ({"history": [5]}, "history row 1"),
        ({"train_time_s": "slow"}, "'train_time_s' must be a finite number"),
        ({"peak_rss_bytes": -1}, "'peak_rss_bytes' must be a count"),
    ],
)
def test_crafted_fields_are_named(tmp_path, saved_state, changes, message):
    path = _write(tmp_path, saved_state, **changes)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged or crafted: .*{message[:40]}") as err:
        load_checkpoint(path)
    assert message in str(err.value)


@pytest.mark.parametrize("epoch", [3, 10**12])
def test_an_epoch_beyond_the_run_is_refused_on_resume(tmp_path, saved_state, epoch):
    history = saved_state["history"] * 3
    path = _write(tmp_path, saved_state, epoch=epoch, history=history)
    trainer = _trainer(tmp_path)
    with pytest.raises(CheckpointError, match=f"{path}: checkpoint is at epoch {epoch} but this run has 2 epochs"):
        trainer.resume(path)


class Keyed:
    """A stand-in callback whose saved state lacks what it reads."""

    key = "Keyed"

    def load_state_dict(self, state):
        return state["missing"]


def test_a_callback_state_that_does_not_fit_is_a_checkpoint_error(tmp_path, saved_state):
    path = _write(tmp_path, saved_state, callbacks={"Keyed": {}})
    trainer = _trainer(tmp_path)
    trainer.callbacks = [Keyed()]
    with pytest.raises(CheckpointError, match=r"the state of Keyed does not fit this run \(KeyError"):
        trainer.resume(path)


def test_the_real_checkpoint_still_resumes(tmp_path, saved_state):
    trainer = _trainer(tmp_path)
    trainer.resume(_write(tmp_path, saved_state))
    assert trainer.epoch == 1 and len(trainer.fit()) == 2


def test_random_bytes_give_a_one_line_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(bytes(range(7, 256)) * 16)  # not a zip archive, not a pickle
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert len(str(err.value).splitlines()) == 1 and str(path) in str(err.value)
