"""Attention in the channel graph: pruning per-head dimensions consistently.

`nn.MultiheadAttention` and torchvision's Swin and MaxViT attention compute their heads from the
same width as their input (`head_dim = embed_dim / num_heads`), so the embedding channels, the
q/k/v projections and the output projection form one set of ids. Pruning removes dimension j of
*every* head at once (ids j, j + d, j + 2d ... are tied), which keeps the heads equal in size, as
these layers require. Heads stay; their per-head width shrinks.

Scaled dot-product attention divides by sqrt(head_dim). When that width shrinks, pruning
(`slimkit.structured.rescale`) multiplies the query projection by sqrt(new / old), so removing channels that were zero leaves the
attention scores exactly as they were (Swin V2's cosine attention and MaxViT's fixed scale have
no such factor).

Attention written inline (a fused qkv Linear, reshape into heads, `q @ k.transpose(-2, -1)` or
`F.scaled_dot_product_attention`, then back) is followed op by op: `matmul` ties the two operands'
contracted channels, so q's and k's dimension j go together, and carries v's channels through
`scores @ v`. When `scaled_dot_product_attention` derives its scale from the pruned width, the
producers of the queries are rescaled the same way (`QueryScale`).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torchvision.models import maxvit as _maxvit, swin_transformer as _swin

from slimkit.structured.channels import Chan, QueryScale, Spread, spread_of
from slimkit.structured.trace.fx_nodes import call_arg
from slimkit.structured.trace.registry import register_function_handler, register_module_handler

if TYPE_CHECKING:
    from slimkit.structured.trace.propagator import ChannelPropagator

# Leaf layers on (..., C) inputs with `qkv`-style and output projections (see `_PROJECTIONS`).
WINDOW_ATTENTION = (
    _swin.ShiftedWindowAttention, _swin.ShiftedWindowAttentionV2, _maxvit.RelativePositionalMultiHeadAttention,
)
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


def _operand(prop: ChannelPropagator, arg: Any) -> Spread | None:
    """An operand's channel ids, or None when it has none that pruning could change (all pinned)."""
    spread = spread_of(prop.info.get(arg)) if isinstance(arg, fx.Node) else None
    return None if spread is None or prop.is_pinned(spread.ids) else spread


def _tie(prop: ChannelPropagator, a: Spread, a_labels: dict, b: Spread, b_labels: dict) -> bool:
    """Union a's and b's ids element by element where their labelled dims meet (ids are constant
    along a dim an operand does not track). False when the two disagree on a dim's size."""
    names = list(dict.fromkeys([a_labels[d] for d in a.dims] + [b_labels[d] for d in b.dims]))
    sizes: dict[Any, int] = {}
    for spread, labels in ((a, a_labels), (b, b_labels)):
        for d, size in zip(spread.dims, spread.ids.shape):
            if sizes.setdefault(labels[d], size) != size:
                return False

    def arranged(spread: Spread, labels: dict) -> torch.Tensor:
        own = [labels[d] for d in spread.dims]
        ids = spread.ids.permute(*[own.index(n) for n in names if n in own])
        return ids.reshape([sizes[n] if n in own else 1 for n in names]).expand([sizes[n] for n in names])

    prop.uf.union(arranged(a, a_labels), arranged(b, b_labels))
    return True


def _contract(
    prop: ChannelPropagator, a: Spread | None, a_labels: dict, b: Spread | None, b_labels: dict, n_batch: int
) -> bool:
    """Operands multiplied and summed over the dims labelled "k": channel j of one meets channel j
    of the other, so they must go together. Returns whether their channels were tied. Otherwise an
    operand whose "k" dim carries channels is kept whole (a sum over channels changes when they go).
    Tying needs both operands' other channel dims to be batch dims (output dims < `n_batch`), such
    as the heads."""
    a_k = a is not None and "k" in [a_labels[d] for d in a.dims]
    b_k = b is not None and "k" in [b_labels[d] for d in b.dims]
    batch_only = a_k and b_k and all(
        labels[d] == "k" or isinstance(labels[d], int) and labels[d] < n_batch
        for spread, labels in ((a, a_labels), (b, b_labels)) for d in spread.dims
    )
    if batch_only and _tie(prop, a, a_labels, b, b_labels):
        for spread, labels in ((a, a_labels), (b, b_labels)):  # the scores keep every head
            _tie_batch_dims(prop, spread, labels, n_batch)
        return True
    for spread, has_k in ((a, a_k), (b, b_k)):
        if has_k:
            prop.uf.pin(spread.ids)
    return False


def _tie_batch_dims(prop: ChannelPropagator, spread: Spread, labels: dict, n_batch: int) -> None:
    """Batch dims (heads) met by an operand whose size there is fixed must not shrink: channel j
    of every head is then one unit."""
    for axis, d in enumerate(spread.dims):
        if isinstance(labels[d], int) and labels[d] < n_batch:
            prop.uf.union(spread.ids.narrow(axis, 0, 1).expand_as(spread.ids), spread.ids)


def _carry(prop: ChannelPropagator, node: fx.Node, sides: list[tuple[Spread, dict]], n_batch: int) -> Any:
    """The output's ids: those of the operands' uncontracted dims, placed at their output dims.
    Their batch dims meet the other operand's (e.g. the scores' heads in `scores @ v`), which does
    not shrink with them, so those stay whole."""
    out_shape = tuple(node.meta["tensor_meta"].shape)
    placed = []
    out_dims = [[labels[d] for d in spread.dims] for spread, labels in sides]
    shared = len(out_dims) == 2 and out_dims[0] == out_dims[1]
    for (spread, labels), dims in zip(sides, out_dims):
        if not shared:  # operands carrying the same dims shrink together: then nothing is fixed
            _tie_batch_dims(prop, spread, labels, n_batch)
        if any(not isinstance(d, int) or out_shape[d] != n for d, n in zip(dims, spread.ids.shape)):
            prop.uf.pin(spread.ids)
        else:
            placed.append((dims, spread.ids))
    if len(placed) == 2:  # both operands carry channels into the output
        (dims_a, ids_a), (dims_b, ids_b) = placed
        if dims_a == dims_b and ids_a.shape == ids_b.shape:
            prop.uf.union(ids_a, ids_b)
        else:  # two independent channel sets in one tensor cannot be followed
            prop.uf.pin(ids_a)
            prop.uf.pin(ids_b)
            placed = []
    return prop.tidy(node, *placed[0]) if placed else prop.fresh(node.meta["tensor_meta"], pinned=True)


def _matmul_labels(ndim: int, out_ndim: int, contracted: int, kept: int) -> dict:
    """Each operand dim's output dim (batch dims align right), or "k" for the contracted dim."""
    labels: dict = {d: out_ndim - ndim + d for d in range(ndim - 2)}
    labels.update({contracted: "k", kept: out_ndim - 2 if kept == ndim - 2 else out_ndim - 1})
    return labels


def matmul(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`a @ b` (matmul/bmm): a's last dim meets b's second to last; the rest carry to the output."""
    a_arg = call_arg(node, 0, "input")
    b_arg = call_arg(node, 1, "other") if "mat2" not in node.kwargs else node.kwargs["mat2"]
    shapes = [arg.meta["tensor_meta"].shape if isinstance(arg, fx.Node) else () for arg in (a_arg, b_arg)]
    if min(len(shape) for shape in shapes) < 2:
        return prop.opaque(node)
    out_ndim = len(node.meta["tensor_meta"].shape)
    na, nb = len(shapes[0]), len(shapes[1])
    a_labels = _matmul_labels(na, out_ndim, contracted=na - 1, kept=na - 2)
    b_labels = _matmul_labels(nb, out_ndim, contracted=nb - 2, kept=nb - 1)
    a, b = _operand(prop, a_arg), _operand(prop, b_arg)
    if _contract(prop, a, a_labels, b, b_labels, n_batch=out_ndim - 2):
        return prop.fresh(node.meta["tensor_meta"], pinned=True)  # q @ k.T: scores carry no channels
    sides = [(s, l) for s, l in ((a, a_labels), (b, b_labels)) if s is not None and not prop.is_pinned(s.ids)]
    return _carry(prop, node, sides, n_batch=out_ndim - 2)


def scaled_dot_product_attention(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`F.scaled_dot_product_attention(q, k, v)`: q and k meet over their last dim, v's last dim is
    the output's. With no explicit `scale`, pruning the q/k width changes the scale: recorded."""
    names = ("query", "key", "value")
    q_arg, k_arg, v_arg = (node.args[i] if len(node.args) > i else node.kwargs[n] for i, n in enumerate(names))
    for arg in list(node.args[3:]) + [v for k, v in node.kwargs.items() if k not in names]:
        prop.pin_value(prop.info.get(arg) if isinstance(arg, fx.Node) else None)  # attn_mask
    nq, nk, nv = (len(arg.meta["tensor_meta"].shape) for arg in (q_arg, k_arg, v_arg))
    out_ndim = len(node.meta["tensor_meta"].shape)
    q_labels = {d: d for d in range(nq - 1)} | {nq - 1: "k"}  # the scores' dims
    k_labels = {d: nq - nk + d for d in range(nk - 2)} | {nk - 2: "s", nk - 1: "k"}
    q, k = _operand(prop, q_arg), _operand(prop, k_arg)
    if _contract(prop, q, q_labels, k, k_labels, n_batch=nq - 2) and call_arg(node, 6, "scale") is None:
        targets = _query_producers(prop, node, q.ids)
        if targets:
            prop.graph.query_scales.append(QueryScale(q.ids.movedim(q.dims.index(nq - 1), -1), targets))
        else:  # nothing to rescale: keep the width, so that the scale stays right
            prop.uf.pin(q.ids)
    v = _operand(prop, v_arg)
    v_labels = {d: out_ndim - nv + d for d in range(nv - 2)} | {nv - 2: "s", nv - 1: out_ndim - 1}
    if v is not None and nv - 2 in v.dims:  # channels along the keys' length: summed over, keep them
        prop.uf.pin(v.ids)
        v = None
    return _carry(prop, node, [(v, v_labels)] if v is not None else [], n_batch=out_ndim - 2)


# Ops that only move elements (or scale them by a constant), so scaling a projection's rows scales
# the queries they become by the same factor.
_LAYOUT_METHODS = {"view", "reshape", "permute", "transpose", "contiguous", "flatten", "unflatten", "squeeze",
                   "unsqueeze", "unbind", "split", "chunk"}
_LAYOUT_FUNCTIONS = {operator.getitem, torch.reshape, torch.permute, torch.transpose, torch.flatten, torch.unbind,
                     torch.split, torch.chunk, torch.squeeze, torch.unsqueeze}


def _is_layout(prop: ChannelPropagator, node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _LAYOUT_METHODS
    if node.op == "call_function":
        return node.target in _LAYOUT_FUNCTIONS
    return node.op == "call_module" and isinstance(prop.gm.get_submodule(str(node.target)), (nn.Identity, nn.Dropout))


def _carries(prop: ChannelPropagator, node: fx.Node, ids: torch.Tensor) -> bool:
    values = prop.info.get(node)
    values = values if isinstance(values, (list, tuple)) else [values]
    return any(spread_of(v) is not None and bool(torch.isin(spread_of(v).ids, ids).any()) for v in values)


def _only_as_query(sdpa: fx.Node, node: fx.Node) -> bool:
    args = [*sdpa.args, *sdpa.kwargs.values()]
    return args.count(node) == 1 and (sdpa.args[:1] == (node,) or sdpa.kwargs.get("query") is node)


def _query_producers(prop: ChannelPropagator, sdpa: fx.Node, query_ids: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The rows of the Linear/conv whose output, only re-laid out, is SDPA's query, provided those
    rows reach nothing else. Anything else (a bias added, a norm, the same rows as key, or feeding
    a residual) would not scale with them: then there is no producer and q keeps its width."""
    source = sdpa.args[0] if sdpa.args else sdpa.kwargs["query"]
    while _is_layout(prop, source):
        source = source.args[0]
    module = prop.gm.get_submodule(str(source.target)) if source.op == "call_module" else None
    if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return []
    name = str(source.target)
    uses = [n for n in prop.gm.graph.nodes if n.op in ("call_module", "get_attr") and n is not source
            and (str(n.target) == name or str(n.target).startswith(name + "."))]
    if uses:  # the projection also makes other tensors (called twice, weight shared): they would scale too
        return []
    frontier, seen = [source], {source}
    while frontier:  # every path of the query rows must be layout ops ending as this SDPA's query
        current = frontier.pop()
        for user in current.users:
            if user is sdpa and _only_as_query(sdpa, current):
                continue
            if user is sdpa or not _is_layout(prop, user):
                return []
            if user not in seen and _carries(prop, user, query_ids):  # not k, v of a fused projection
                seen.add(user)
                frontier.append(user)
    rows = [(f"{name}.{attr}", torch.isin(prop.graph.tensors[(f"{name}.{attr}", 0)], query_ids).nonzero().flatten())
            for attr in ("weight", "bias") if (f"{name}.{attr}", 0) in prop.graph.tensors]
    return [(qualname, r) for qualname, r in rows if r.numel()]


def patch_merging_pad(prop: ChannelPropagator, node: fx.Node) -> Any:
    """Swin's `_patch_merging_pad`: pads H and W, then concatenates 4 strided views along C."""
    x = prop.chan(node, node.args[0])
    last = len(node.args[0].meta["tensor_meta"].shape) - 1
    ids = prop.channel_dim(node, x, last, "_patch_merging_pad")
    return Chan(last, torch.cat([ids] * 4))


def einsum(prop: ChannelPropagator, node: fx.Node) -> Any:
    """Arbitrary index algebra: the channels of its operands are kept."""
    return prop.opaque(node)


register_module_handler(nn.MultiheadAttention, multihead_attention, leaf=False)
for _window_attention in WINDOW_ATTENTION:  # leaves: their heads hide inside one library call
    register_module_handler(_window_attention, window_attention)
for _target in (torch.matmul, torch.bmm, operator.matmul, "matmul", "bmm"):
    register_function_handler(_target, matmul)
register_function_handler(F.scaled_dot_product_attention, scaled_dot_product_attention)
register_function_handler(torch.einsum, einsum)
register_function_handler(_swin._patch_merging_pad, patch_merging_pad)
