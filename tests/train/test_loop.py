import pytest
import torch

from slimkit.runs.config import make_config
from slimkit.runs import build_trainer
from slimkit.train import Callback, CheckpointError, Trainer, load_checkpoint


def _trainer(tmp_path=None, callbacks=(), **overrides):
    values = {"model": "lenet300", "data": "synthetic", "epochs": 3, "batch_size": 64, "lr": 0.05, "progress": "none"}
    config = make_config({**values, **overrides})
    trainer, _ = build_trainer(config, tmp_path, callbacks)
    return trainer


def test_training_learns_the_synthetic_task():
    trainer = _trainer()
    history = trainer.fit()
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["test_acc"] > 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, trainer):
        self.events.append("train_start")

    def on_epoch_start(self, trainer, epoch):
        self.events.append(f"epoch_start{epoch}")

    def on_after_forward(self, trainer, step):
        assert step.outputs is not None and step.loss is not None and step.indices is not None
        self.events.append("forward")

    def on_after_backward(self, trainer, step):
        assert all(p.grad is not None for p in trainer.model.parameters())
        self.events.append("backward")

    def on_step_end(self, trainer, step):
        self.events.append("step_end")

    def on_epoch_end(self, trainer, epoch, row):
        row["recorded"] = len(self.events)
        self.events.append(f"epoch_end{epoch}")

    def on_train_end(self, trainer):
        self.events.append("train_end")


def test_callback_points_fire_in_order(tmp_path):
    recorder = Recorder()
    trainer = _trainer(tmp_path, [recorder], epochs=1, batch_size=256)
    trainer.fit()
    assert recorder.events == [
        "train_start", "epoch_start0", "forward", "backward", "step_end", "forward", "backward", "step_end",
        "epoch_end0", "train_end",
    ]
    assert "recorded" in (tmp_path / "history.csv").read_text().splitlines()[0]


class ScaleLoss(Callback):
    def on_after_forward(self, trainer, step):
        step.loss = step.loss * 0.0


def test_callbacks_can_replace_the_loss():
    trainer = _trainer(callbacks=[ScaleLoss()], epochs=1, weight_decay=0.0)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_same_seed_same_weights():
    a, b = _trainer(epochs=1), _trainer(epochs=1)
    a.fit(), b.fit()
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


class CrashAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_in_process_resume_is_exact(tmp_path):
    reference = _trainer(epochs=3)
    reference.fit()
    first = _trainer(tmp_path, [CrashAt(2)], epochs=3)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = _trainer(tmp_path, epochs=3)
    resumed.resume()
    assert resumed.epoch == 2
    resumed.fit()
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in reference.history]


def test_diverging_loss_stops_with_advice():
    trainer = _trainer(lr=1e6, momentum=0.0, epochs=2)
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch 1 step \d+: .*check lr and weight_decay"):
        trainer.fit()


def test_divergence_in_the_last_step_is_not_reported_as_a_result(tmp_path):
    """One step per epoch: the update that overflows the weights is the last; no step's loss shows it."""
    trainer = _trainer(tmp_path, lr=1e30, epochs=1, batch_size=512)
    with pytest.raises(FloatingPointError, match="became .* at epoch 1: the training diverged; check lr and weight_decay"):
        trainer.fit()
    assert trainer.history == [] and not (tmp_path / "checkpoint.pt").exists()


class PoisonWeight(Callback):
    """Writes inf into a weight after the last step, as an overflowing update would."""

    def on_step_end(self, trainer, step):
        if step.batch_index == len(trainer.loaders.train) - 1:
            with torch.no_grad():
                trainer.model.fc2.weight[0, 0] = float("inf")


def test_non_finite_weights_stop_the_run_before_it_is_evaluated(tmp_path):
    trainer = _trainer(tmp_path, [PoisonWeight()], epochs=2)
    with pytest.raises(FloatingPointError, match="weight fc2.weight became nan/inf at epoch 1"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("payload", [b"garbage", b""])
def test_corrupt_checkpoint_is_named(tmp_path, payload):
    (tmp_path / "checkpoint.pt").write_bytes(payload)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_foreign_checkpoint_is_rejected(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a slimkit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_checkpoint_for_another_model_is_rejected(tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit()
    other = _trainer(tmp_path, model="lenet5", epochs=2)
    with pytest.raises(CheckpointError, match="does not match"):
        other.resume()


def test_checkpoints_never_execute_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "slimkit-checkpoint", "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path / "evil.pt")


def test_any_iterable_of_pairs_works_as_a_loader():
    base = _trainer(epochs=1)
    pairs = [(b.inputs, b.targets) for b in base.loaders.train]
    loaders = type(base.loaders)(train=pairs, test=[(b.inputs, b.targets) for b in base.loaders.test])
    trainer = Trainer(base.model, loaders, base.config)
    assert trainer.fit()[-1]["train_examples"] == 512
