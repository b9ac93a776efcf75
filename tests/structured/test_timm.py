"""Pruning real timm models (random weights, nothing downloaded). timm writes its attention inline:
a fused qkv Linear, heads by reshape and permute, then `F.scaled_dot_product_attention` or the
explicit `q @ k.transpose(-2, -1)` path. Its head width is an attribute that slimkit rewrites
(`WIDTH_ATTRIBUTES`)."""

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from slimkit.structured import prune_channels
from slimkit.structured.netslim import load_pruned_model
from tests.structured.helpers import prune_and_compare
from tests.structured.test_attention import _sharpen, _without_layernorm


def _small_vit(fused: bool) -> VisionTransformer:
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=10)
    for block in vit.blocks:
        block.attn.fused_attn = fused
    return vit


@pytest.mark.parametrize("fused", [True, False])
def test_timm_vit_prunes_head_dims_exactly(fused):
    torch.manual_seed(0)
    vit = _sharpen(_without_layernorm(_small_vit(fused)))
    pruned, ratio = prune_and_compare(vit, torch.randn(2, 3, 32, 32), atol=1e-4)
    for block in pruned.blocks:
        attn = block.attn
        assert attn.head_dim < 8 and attn.attn_dim == attn.num_heads * attn.head_dim == attn.proj.in_features
        assert attn.qkv.out_features == 3 * attn.attn_dim
    assert vit.blocks[0].attn.head_dim == 8 and type(vit.blocks[0].attn.head_dim) is int
    assert ratio < 0.35


def test_pruned_timm_vit_loads_back_and_exports(tmp_path):
    pytest.importorskip("onnxruntime")
    from slimkit.export.onnx import export_onnx, onnx_max_abs_diff

    torch.manual_seed(0)
    pruned = prune_channels(_sharpen(_small_vit(fused=True)), (3, 32, 32), 0.5).eval()
    loaded = load_pruned_model(_small_vit(fused=True), pruned.state_dict()).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), pruned(x), atol=1e-6)
    assert loaded.blocks[0].attn.head_dim == pruned.blocks[0].attn.head_dim
    path = export_onnx(pruned, x, tmp_path / "vit.onnx")
    assert onnx_max_abs_diff(path, pruned, x) < 1e-4


# One model per family that torch.fx can trace; each keeps at most this share of its parameters at
# ratio 0.5 (measured with timm 1.0.31, with a margin). Models whose forward branches on tensor
# values (CrossViT, ConViT, Twins, MobileViT) need leaf_modules= and are not listed.
TIMM_MODELS = {
    "deit_tiny_patch16_224": 0.30,
    "swin_tiny_patch4_window7_224": 0.45,
    "maxvit_nano_rw_256": 0.40,
    "levit_128s": 0.40,
    "eva02_tiny_patch14_224": 0.75,  # F.linear with a concatenated q/v bias: heads kept
    "xcit_nano_12_p16_224": 0.75,  # cross-covariance attention multiplies channels by channels: kept
    "convnext_atto": 0.30,
    "convnextv2_atto": 0.55,  # GRN divides by the mean over channels: its block width is kept
    "poolformer_s12": 0.65,
    "edgenext_xx_small": 0.70,
    "mixer_s16_224": 0.30,
    "resmlp_12_224": 0.30,
    "efficientnet_b0": 0.30,
    "fastvit_t8": 0.30,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TIMM_MODELS))
def test_timm_models_prune(name):
    torch.manual_seed(0)
    try:  # transformers take the image size; convnets run at any size
        model = timm.create_model(name, pretrained=False, num_classes=10, img_size=64).eval()
    except TypeError:
        model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    pruned = prune_channels(model, (3, 64, 64), 0.5).eval()
    with torch.no_grad():
        assert pruned(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    ratio = sum(p.numel() for p in pruned.parameters()) / sum(p.numel() for p in model.parameters())
    assert ratio <= TIMM_MODELS[name]
