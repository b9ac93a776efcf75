"""Attention kept exact by pruning: scaled dot-product attention divides by sqrt(head_dim), so when
pruning narrows the heads the query rows are multiplied by sqrt(new / old). Removing channels that
were zero then leaves the attention scores as they were."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import swin_transformer as _swin

from slimkit.structured.channels import ChannelGraph


@torch.no_grad()
def apply_query_scales(model: nn.Module, graph: ChannelGraph, removed: torch.Tensor) -> None:
    """Before slicing: multiply each query producer by sqrt(E_new / E) (see `QueryScale`)."""
    for scale in graph.query_scales:
        kept = ~torch.isin(graph.uf.roots(scale.ids), removed)
        width = scale.ids.shape[-1]
        new_width = int(kept.reshape(-1, width).sum(1).max())
        if new_width == width:
            continue
        for qualname, rows in scale.targets:
            module_name, _, attr = qualname.rpartition(".")
            tensor = getattr(model.get_submodule(module_name), attr)
            tensor[rows] *= (new_width / width) ** 0.5


@torch.no_grad()
def rescale_attention_queries(module: nn.Module, old_width: int) -> None:
    """After pruning an attention layer from `old_width`, keep q·k / sqrt(head_dim) unchanged for
    the channels kept. A no-op for other layers."""
    if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
        rescale_queries(module.in_proj_weight, module.in_proj_bias, module.in_proj_weight.shape[1], old_width)
    # Swin V2 (a subclass) uses cosine attention, and MaxViT a fixed scale set from the original width:
    # neither depends on the pruned head width.
    elif type(module) is _swin.ShiftedWindowAttention:
        rescale_queries(module.qkv.weight, module.qkv.bias, module.qkv.in_features, old_width)


def rescale_queries(weight: torch.Tensor, bias: torch.Tensor | None, width: int, old_width: int) -> None:
    """Scale the first `width` rows (the queries) by sqrt(width / old_width)."""
    if width == old_width:
        return
    factor = (width / old_width) ** 0.5
    weight[:width].mul_(factor)
    if bias is not None:
        bias[:width].mul_(factor)
