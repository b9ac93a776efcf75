import pytest
import torch

from slimkit.data import load_dataset, make_loaders
from slimkit.distill import Distillation
from slimkit.export import save_model
from slimkit.models import build_model
from slimkit.train import Trainer
from slimkit.train.config import TrainConfig
from slimkit.train.loop import build_optimizer


@pytest.fixture(scope="module")
def digits():
    splits = load_dataset("digits")
    return splits.info, make_loaders(splits, 64, seed=0)


def test_teacher_from_run_folder_drives_the_loss(tmp_path, digits):
    info, loaders = digits
    torch.manual_seed(0)
    teacher = build_model("lenet300", info)
    save_model(teacher, tmp_path, name="lenet300", info=info)
    student = build_model("lenet300", info)
    kd = Distillation(tmp_path, temperature=4.0, alpha=1.0)
    trainer = Trainer(student, loaders, TrainConfig(epochs=1, lr=0.05, progress="none"), callbacks=[kd])
    x, y, _ = next(iter(loaders.train))
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(student(x), y)
    trainer.fit()
    assert not kd.teacher.training
    assert torch.equal(next(kd.teacher.parameters()), next(teacher.parameters()))  # teacher untouched
    assert trainer.history[0]["train_loss"] != pytest.approx(float(ce), rel=1e-3)
    assert 0.0 <= kd.teacher_accuracy(loaders.test) <= 1.0


def test_teacher_with_other_classes_is_rejected(digits):
    info, loaders = digits
    other = build_model("lenet300", type(info)(info.name, info.input_shape, 7, info.mean, info.std))
    trainer = Trainer(build_model("lenet300", info), loaders, TrainConfig(epochs=1, progress="none"),
                      callbacks=[Distillation(other)])
    with pytest.raises(ValueError, match="same number of classes"):
        trainer.fit()


def test_hint_adapters_join_the_optimizer(digits):
    info, loaders = digits
    student, teacher = build_model("lenet5", info), build_model("lenet5", info)
    example = torch.zeros(2, *info.input_shape)
    kd = Distillation(teacher, student=student, hints=[("conv2", "conv2")], example_input=example)
    config = TrainConfig(epochs=1, lr=0.05, progress="none")
    with pytest.raises(ValueError, match="not in the optimizer"):
        Trainer(student, loaders, config, callbacks=[kd]).fit()
    adapter_before = kd.adapters[0].proj.weight.detach().clone()
    optimizer = build_optimizer(kd.trainer_params(student), config)
    Trainer(student, loaders, config, callbacks=[kd], optimizer=optimizer).fit()
    assert not torch.equal(adapter_before, kd.adapters[0].proj.weight)
