import onnx
import pytest
import torch
from torch.nn.utils import parametrize

from slimkit.data import load_dataset
from slimkit.models import build_model
from slimkit.quant import QAT, export_qat, onnx_accuracy
from slimkit.train import Trainer
from slimkit.train.config import TrainConfig
from tests.quant.helpers import trained_digits_lenet5


def test_exported_int8_matches_fake_quant_accuracy(tmp_path):
    model, loaders, splits = trained_digits_lenet5(epochs=4)
    qat = QAT(model)
    assert all(parametrize.is_parametrized(m, "weight") for m in qat.layers.values())
    trainer = Trainer(model, loaders, TrainConfig(epochs=2, optimizer="adam", lr=1e-3, progress="none"), callbacks=[qat])
    trainer.fit()
    # all 1797 digits (train + test): 0.2 pt is 3.6 images
    batches = [(x, y) for x, y, _ in loaders.train] + [(x, y) for x, y, _ in loaders.test]
    fake_quant_acc = trainer.evaluate(batches)["acc"]
    result = export_qat(qat, torch.zeros(2, *splits.info.input_shape), tmp_path / "fp32.onnx", tmp_path / "int8.onnx",
                        loaders.train)
    onnx.checker.check_model(str(result.path))
    assert result.settings["qat_overridden_tensors"] == 5  # every Conv/Linear input got its QAT range
    int8_acc = onnx_accuracy(result.path, batches)
    assert fake_quant_acc > 0.8
    assert abs(int8_acc - fake_quant_acc) <= 0.002


def test_qat_needs_observed_ranges_before_export(tmp_path):
    info = load_dataset("digits").info
    qat = QAT(build_model("lenet5", info))
    with pytest.raises(ValueError, match="seen no data"):
        export_qat(qat, torch.zeros(2, *info.input_shape), tmp_path / "a.onnx", tmp_path / "b.onnx", [])


def test_ste_lets_gradients_reach_quantized_weights():
    info = load_dataset("digits").info
    model = build_model("lenet5", info)
    QAT(model)
    model.train()
    model(torch.randn(4, *info.input_shape)).sum().backward()
    original = model.conv1.parametrizations.weight.original
    assert original.grad is not None and original.grad.abs().sum() > 0


def test_float_model_can_be_taken_twice_and_leaves_the_live_model_intact():
    """Copies of a parametrized module share its class: removing parametrizations on one copy
    once broke the next copy and the live model (`slimkit quantize --mode qat` crashed)."""
    info = load_dataset("digits").info
    model = build_model("lenet5", info)
    qat = QAT(model)
    x = torch.randn(3, *info.input_shape)
    first, second = qat.float_model(), qat.float_model()
    assert not parametrize.is_parametrized(first.conv1) and not parametrize.is_parametrized(second.conv1)
    assert torch.equal(first(x), second(x))
    assert parametrize.is_parametrized(model.conv1, "weight")
    model(x)  # the live model still runs with its fake-quant
