"""Width attributes of third-party models, declared through the registry: int attributes that
size a reshape in forward (followed while tracing) or describe a layer's width (rewritten after
pruning from the tensors they equal)."""

from __future__ import annotations

from torchvision.models import maxvit as _maxvit
from torchvision.models.vision_transformer import VisionTransformer

from slimkit.structured.trace.registry import register_width_attributes

register_width_attributes(VisionTransformer, {"hidden_dim": "conv_proj.weight"})
# MaxViT's attention is a leaf (see ops.attention): its head_dim only needs rewriting
register_width_attributes(
    _maxvit.RelativePositionalMultiHeadAttention, {"head_dim": lambda m: m.merge.in_features // m.n_heads}
)
register_width_attributes("timm.layers.attention.Attention", {
    "head_dim": lambda m: m.qkv.out_features // (3 * m.num_heads),
    "attn_dim": lambda m: m.proj.in_features,
})
