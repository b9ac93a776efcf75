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


@pytest.mark.parametrize("layout", ["csr", "channel0"])
def test_compressed_layers_export_as_plain_layers(tmp_path, layout):
    from slimkit.compressed import compress, compressed_layers
    from slimkit.quant import size_report
    from slimkit.sparse.masking import apply_masks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    keep = torch.tensor([True, False, True, True, False, True, False, True])
    apply_masks(model, {"0": keep.view(-1, 1, 1, 1).expand(8, 1, 3, 3).clone(), "3": torch.rand(5, 128) < 0.3})
    masked_report = size_report(model)
    compress(model, ["0"], layout=layout)
    if layout == "csr":
        compress(model, ["3"])
    assert compressed_layers(model)
    path = export_onnx(model, torch.randn(2, 1, 6, 6), tmp_path / "m.onnx")
    assert onnx_max_abs_diff(path, model, torch.randn(3, 1, 6, 6)) < 1e-5
    assert compressed_layers(model)  # the model itself is left compressed
    assert size_report(model) == masked_report  # sizes counted without densifying, the same as masked


def test_non_finite_outputs_are_not_a_difference_of_nan(tmp_path):
    """np.max of a nan difference is nan, and `nan > tolerance` is False: it must not pass as a match."""
    from slimkit.export import OnnxExportError

    model = build_model("lenet5", MNIST)
    with torch.no_grad():
        model.fc3.bias[0] = float("nan")
    path = export_onnx(model, torch.randn(2, 1, 28, 28), tmp_path / "m.onnx")
    with pytest.raises(OnnxExportError, match="the PyTorch output holds nan/inf"):
        onnx_max_abs_diff(path, model, torch.randn(3, 1, 28, 28))
