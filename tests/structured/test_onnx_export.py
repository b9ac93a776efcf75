import pytest
import torch
import torchvision

from slimkit.structured import prune_channels

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from slimkit.export.onnx import export_onnx, onnx_max_abs_diff  # noqa: E402


def test_channel_pruned_model_exports_and_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10).eval()
    pruned = prune_channels(model, (3, 32, 32), 0.5).eval()
    example = torch.randn(2, 3, 32, 32)
    path = export_onnx(pruned, example, tmp_path / "pruned.onnx")
    assert onnx_max_abs_diff(path, pruned, example) < 1e-4


def test_head_pruned_vision_transformer_exports_and_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    ).eval()
    pruned = prune_channels(vit, (3, 32, 32), 0.5).eval()
    example = torch.randn(2, 3, 32, 32)
    path = export_onnx(pruned, example, tmp_path / "vit.onnx")
    assert onnx_max_abs_diff(path, pruned, example) < 1e-4
