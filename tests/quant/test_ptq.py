import numpy as np
import onnx
import pytest
import torch
from torch import nn

from slimkit.data import load_dataset
from slimkit.export import export_onnx
from slimkit.models import build_model
from slimkit.quant import (
    calibration_ranges, compare, fold_batchnorm, int8_weights, quantize_dynamic_onnx, quantize_static_onnx, size_report,
)
from tests.quant.helpers import trained_digits_lenet5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """LeNet-5 trained for a few epochs on scikit-learn digits, exported to fp32 ONNX."""
    model, loaders, splits = trained_digits_lenet5(epochs=5)
    path = export_onnx(model, torch.zeros(2, *splits.info.input_shape), tmp_path_factory.mktemp("m") / "fp32.onnx")
    return model.eval(), path, loaders, splits.info


def test_static_int8_is_valid_small_and_accurate(trained, tmp_path):
    model, fp32, loaders, info = trained
    result = quantize_static_onnx(fp32, tmp_path / "int8.onnx", loaders.train, calib_batches=4)
    onnx.checker.check_model(str(result.path))
    assert result.fp32_ops == []
    report = compare(fp32, result.path, loaders.test, info.input_shape, batch_sizes=(1,), repeats=3)
    assert report["size_ratio"] > 2.5  # weights dominate LeNet-5: ~4x minus the graph overhead
    assert report["fp32_acc"] > 0.8
    assert abs(report["acc_drop_pt"]) <= 2.0  # 360 test images: 2 pt = 7 images


def test_dynamic_quantizes_linear_weights_only(trained, tmp_path):
    _, fp32, loaders, _ = trained
    result = quantize_dynamic_onnx(fp32, tmp_path / "dyn.onnx")
    weights = int8_weights(result.path)
    assert weights and all(w.dim() == 2 for w in weights.values())  # Gemm/MatMul weights, no conv kernels
    assert "Conv" in result.fp32_ops


def test_zero_calibration_batches_is_an_error(trained, tmp_path):
    _, fp32, loaders, _ = trained
    with pytest.raises(ValueError, match="at least one batch"):
        quantize_static_onnx(fp32, tmp_path / "x.onnx", loaders.train, calib_batches=0)
    with pytest.raises(ValueError, match="calibration must be"):
        quantize_static_onnx(fp32, tmp_path / "x.onnx", loaders.train, calibration="mse")


def test_calibration_methods_differ_on_outliers(tmp_path):
    torch.manual_seed(0)
    path = export_onnx(nn.Sequential(nn.Linear(16, 16), nn.ReLU()), torch.zeros(2, 16), tmp_path / "lin.onnx")
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((256, 16)).astype(np.float32) for _ in range(4)]
    batches[0][0, 0] = 200.0  # one outlier among 16k values
    minmax = calibration_ranges(path, batches, "minmax")["input"]
    entropy = calibration_ranges(path, batches, "entropy")["input"]
    percentile = calibration_ranges(path, batches, "percentile", percentile=99.9)["input"]
    assert minmax[1] == pytest.approx(200.0)
    assert entropy[1] < 50 and percentile[1] < 50  # both clip the outlier; min-max cannot


def test_pruned_zeros_stay_zero_and_sizes_add_up(trained, tmp_path):
    model, _, loaders, info = trained
    pruned = build_model("lenet5", info)
    pruned.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer in (pruned.conv1, pruned.conv2, pruned.fc1, pruned.fc2, pruned.fc3):
            w = layer.weight
            w[w.abs() < w.abs().flatten().kthvalue(int(0.8 * w.numel())).values] = 0
    fp32 = export_onnx(pruned, torch.zeros(2, *info.input_shape), tmp_path / "p.onnx")
    int8 = quantize_static_onnx(fp32, tmp_path / "p8.onnx", loaders.train, calib_batches=2).path
    q = int8_weights(int8)
    for name in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        zeros = getattr(pruned, name).weight == 0
        codes = next(v for k, v in q.items() if k.startswith(f"{name}.weight"))
        assert torch.equal(codes == 0, zeros) or bool(torch.all(codes[zeros] == 0))
    report = size_report(pruned)
    assert report.weights_nonzero < 0.25 * report.weights_total
    assert report.sparse_int8_bytes < report.int8_dense_bytes < report.fp32_bytes
    assert report.fp32_bytes / report.int8_dense_bytes > 3


def test_batchnorm_folding_keeps_outputs():
    info_model = build_model("resnet20", load_dataset("digits").info)
    info_model.train()
    for _ in range(3):
        info_model(torch.randn(16, 1, 8, 8))
    info_model.eval()
    x = torch.randn(4, 1, 8, 8)
    before = info_model(x)
    folded = fold_batchnorm(info_model)
    assert len(folded) == 19 and not any(isinstance(m, nn.BatchNorm2d) for m in info_model.modules())
    assert torch.allclose(info_model(x), before, atol=1e-4)
