"""Attention layers in the channel graph: pruning per-head dimensions consistently.

`nn.MultiheadAttention` and torchvision's Swin and MaxViT attention compute their heads from the
same width as their input (`head_dim = embed_dim / num_heads`), so the embedding channels, the
q/k/v projections and the output projection form one set of ids. Pruning removes dimension j of
*every* head at once (ids j, j + d, j + 2d ... are tied), which keeps the heads equal in size, as
these layers require. Heads stay; their per-head width shrinks.

Scaled dot-product attention divides by sqrt(head_dim). When that width shrinks, `rescale_queries`
multiplies the query projection by sqrt(new / old), so removing channels that were zero leaves the
attention scores exactly as they were (Swin V2's cosine attention and MaxViT's fixed scale have
no such factor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch import nn
from torchvision.models import maxvit as _maxvit, swin_transformer as _swin

from slimkit.structured.channels import Chan

if TYPE_CHECKING:
    from slimkit.structured.propagate import ChannelPropagator

# Leaf layers on (..., C) inputs with `qkv`-style and output projections (see `_PROJECTIONS`).
WINDOW_ATTENTION = (
    _swin.ShiftedWindowAttention, _swin.ShiftedWindowAttentionV2, _maxvit.RelativePositionalMultiHeadAttention,
)
ATTENTION = (nn.MultiheadAttention, *WINDOW_ATTENTION)
_PROJECTIONS = {  # (q/k/v projection, output projection, attribute holding the head count)
    _swin.ShiftedWindowAttention: ("qkv", "proj", "num_heads"),
    _swin.ShiftedWindowAttentionV2: ("qkv", "proj", "num_heads"),
    _maxvit.RelativePositionalMultiHeadAttention: ("to_qkv", "merge", "n_heads"),
}


def _tie_heads(prop: ChannelPropagator, ids: torch.Tensor, num_heads: int) -> None:
    """Dimension j of every head goes together, so all heads keep the same width."""
    per_head = ids.reshape(num_heads, -1)
    prop.uf.union(per_head[:1].expand_as(per_head), per_head)


def _record_projections(
    prop: ChannelPropagator, ids: torch.Tensor, qkv_weight: str, qkv_bias: str | None, out_linear: str, out_bias: bool,
) -> None:
    """The q/k/v projection's rows (q, k and v each follow `ids`) and columns, and the output
    projection's rows and columns: every one of them is sliced by the same embedding channels."""
    three = torch.cat([ids, ids, ids])
    prop.record(qkv_weight, 0, three)
    prop.record(qkv_weight, 1, ids)
    if qkv_bias is not None:
        prop.record(qkv_bias, 0, three)
    prop.record(f"{out_linear}.weight", 0, ids)
    prop.record(f"{out_linear}.weight", 1, ids)
    if out_bias:
        prop.record(f"{out_linear}.bias", 0, ids)


def _embedding_ids(prop: ChannelPropagator, arg: Any, dim: int) -> torch.Tensor | None:
    """The channel ids of `arg` along `dim`, or None when its channels are tracked elsewhere."""
    chan = prop.info.get(arg) if isinstance(arg, fx.Node) else None
    if not isinstance(chan, Chan):
        return None
    chan = prop.retrack(chan, dim, arg.meta["tensor_meta"].shape[dim])
    return chan.ids if chan.start == dim and chan.ids.ndim == 1 else None


def multihead_attention(prop: ChannelPropagator, node: fx.Node, module: nn.MultiheadAttention) -> Any:
    """`nn.MultiheadAttention(query, key, value, ...)`: one id set over embedding and head dims."""
    args = [node.args[i] if len(node.args) > i else node.kwargs.get(name)
            for i, name in enumerate(("query", "key", "value"))]
    last = len(args[0].meta["tensor_meta"].shape) - 1
    found = [_embedding_ids(prop, arg, last) for arg in args]
    if not module._qkv_same_embed_dim or any(ids is None for ids in found):
        return prop.opaque(node)  # separate kdim/vdim projections, or channels on another dim: kept whole
    ids = found[0]
    for other in found[1:]:
        prop.uf.union(ids, other)
    _tie_heads(prop, ids, module.num_heads)
    name = str(node.target)
    qkv_bias = f"{name}.in_proj_bias" if module.in_proj_bias is not None else None
    _record_projections(prop, ids, f"{name}.in_proj_weight", qkv_bias, f"{name}.out_proj", module.out_proj.bias is not None)
    for attr in ("bias_k", "bias_v"):  # shape (1, 1, E)
        if getattr(module, attr) is not None:
            prop.record(f"{name}.{attr}", 2, ids)
    prop.record_module(name, ids, ids)
    weights_meta = node.meta.get("tensor_meta")[1]
    return [Chan(last, ids), prop.fresh(weights_meta, pinned=True)]


def window_attention(prop: ChannelPropagator, node: fx.Node, module: nn.Module) -> Any:
    """torchvision Swin (V1/V2) and MaxViT attention on (..., C): q/k/v and output projections follow C."""
    qkv_name, out_name, heads_attr = _PROJECTIONS[type(module)]
    last = len(node.args[0].meta["tensor_meta"].shape) - 1
    ids = _embedding_ids(prop, node.args[0], last)
    if ids is None:
        return prop.opaque(node)
    _tie_heads(prop, ids, getattr(module, heads_attr))
    name = str(node.target)
    qkv, out = getattr(module, qkv_name), getattr(module, out_name)
    qkv_bias = f"{name}.{qkv_name}.bias" if qkv.bias is not None else None
    _record_projections(prop, ids, f"{name}.{qkv_name}.weight", qkv_bias, f"{name}.{out_name}", out.bias is not None)
    prop.record_module(name, ids, ids)
    return Chan(last, ids)


def patch_merging_pad(prop: ChannelPropagator, node: fx.Node) -> Any:
    """Swin's `_patch_merging_pad`: pads H and W, then concatenates 4 strided views along C."""
    x = prop.chan(node, node.args[0])
    last = len(node.args[0].meta["tensor_meta"].shape) - 1
    ids = prop.channel_dim(node, x, last, "_patch_merging_pad")
    return Chan(last, torch.cat([ids] * 4))


KNOWN_FUNCTIONS = {_swin._patch_merging_pad: patch_merging_pad}


def sync_attention_widths(module: nn.Module) -> None:
    """Make width attributes (MHA's embed_dim/head_dim, MaxViT's head_dim) match the resized projections."""
    if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
        width = module.in_proj_weight.shape[1]
        module.embed_dim = module.kdim = module.vdim = width
        module.head_dim = width // module.num_heads
    elif isinstance(module, _maxvit.RelativePositionalMultiHeadAttention):
        module.head_dim = module.merge.in_features // module.n_heads


@torch.no_grad()
def rescale_attention_queries(module: nn.Module, old_width: int) -> None:
    """After pruning from `old_width`, keep q·k / sqrt(head_dim) unchanged for the channels kept."""
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
