import numpy as np
import onnx
import pytest
import torch
from torch import nn

from slimkit.data.base import DatasetInfo
from slimkit.export import export_onnx, onnx_max_abs_diff, ort_session, run_session
from slimkit.models import build_model

MNIST = DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.286,), (0.353,))
RGB = DatasetInfo("toy-rgb", (3, 32, 32), 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.mark.parametrize("name,info", [("lenet5", MNIST), ("tv:resnet18", RGB)])
def test_export_matches_pytorch(tmp_path, name, info):
    torch.manual_seed(0)
    model = build_model(name, info)
    path = export_onnx(model, torch.randn(1, *info.input_shape), tmp_path / "m.onnx")
    onnx.checker.check_model(str(path))
    assert onnx_max_abs_diff(path, model, torch.randn(5, *info.input_shape)) < 1e-4
    assert model.training  # the caller's model keeps its mode


def test_batch_axis_is_dynamic(tmp_path):
    model = build_model("lenet5", MNIST)
    path = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path / "m.onnx")
    session = ort_session(path)
    for batch in (1, 7):
        assert run_session(session, np.zeros((batch, 1, 28, 28), np.float32)).shape == (batch, 10)


def test_torchscript_exporter_fallback(tmp_path):
    model = build_model("lenet5", MNIST)
    path = export_onnx(model, torch.randn(2, 1, 28, 28), tmp_path / "m.onnx", exporter="torchscript", opset=17)
    assert onnx.load(str(path)).opset_import[0].version == 17
    assert onnx_max_abs_diff(path, model, torch.randn(3, 1, 28, 28)) < 1e-4


def test_pruned_zeros_survive_export(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
    with torch.no_grad():
        model[1].weight[:, ::2] = 0
    path = export_onnx(model, torch.randn(2, 4, 4), tmp_path / "m.onnx")
    weights = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.dims == [8, 16]
               or list(t.dims) == [16, 8]]
    assert weights and int((weights[0] == 0).sum()) == 64


def test_bad_input_is_rejected(tmp_path):
    model = build_model("lenet5", MNIST)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, torch.randn(2, 1, 28, 28), tmp_path / "m.onnx", opset=11)
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(model, torch.randn(2, 1, 28, 28), tmp_path / "m.onnx", exporter="tf")
    with pytest.raises(FileNotFoundError):
        ort_session(tmp_path / "missing.onnx")
