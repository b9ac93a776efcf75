"""Functional ops in the channel graph: padding, rolling, tiling, and the functional forms of
linear and normalisation layers (code that calls `F.linear`/`F.group_norm` on its own parameters)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F

from slimkit.structured.channels import Chan, spread_of, tidy
from slimkit.structured.fx_nodes import call_arg, norm_dim, shape_of

if TYPE_CHECKING:
    from slimkit.structured.propagate import ChannelPropagator


def pad(prop: ChannelPropagator, node: fx.Node) -> Any:
    """Padding the channel dim (option-A shortcuts) adds constant channels, which stay pinned."""
    x = prop.chan(node, node.args[0])
    ndim = len(shape_of(node.args[0]))
    amounts = list(call_arg(node, 1, "pad"))
    mode = call_arg(node, 2, "mode", "constant")
    ids = x.ids
    for i in range(0, len(amounts), 2):
        dim = ndim - 1 - i // 2
        left, right = amounts[i], amounts[i + 1]
        if not (x.start <= dim < x.stop) or left == right == 0:
            continue
        if x.ids.ndim != 1 or mode != "constant" or min(left, right) < 0:
            return prop.opaque(node)
        pad_l, pad_r = prop.uf.new((left,)), prop.uf.new((right,))
        prop.uf.pin(pad_l)
        prop.uf.pin(pad_r)
        ids = torch.cat([pad_l, ids, pad_r])
    return Chan(x.start, ids)


def roll(prop: ChannelPropagator, node: fx.Node) -> Any:
    """Rolling spatial dims (Swin's shifted windows) moves no channels; rolling channels pins them."""
    x = prop.value(node, node.args[0])
    ndim = len(shape_of(node.args[0]))
    dims = call_arg(node, 2, "dims")
    dims = [] if dims is None else dims if isinstance(dims, (list, tuple)) else [dims]
    if not dims or any(norm_dim(d, ndim) in spread_of(x).dims for d in dims):
        return prop.opaque(node)
    return x


def repeat(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`x.repeat(*sizes)` tiles the tensor: channels follow where their dims are not tiled."""
    x = spread_of(prop.value(node, node.args[0]))
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = sizes[0]
    offset = len(sizes) - len(shape_of(node.args[0]))
    if any(sizes[d + offset] != 1 for d in x.dims):
        return prop.opaque(node)
    return tidy([d + offset for d in x.dims], x.ids)


def repeat_interleave(prop: ChannelPropagator, node: fx.Node) -> Any:
    """Repeating elements along a dim that holds no channels leaves them where they are."""
    dim = call_arg(node, 2, "dim")
    x = prop.value(node, node.args[0])
    if dim is None or isinstance(call_arg(node, 1, "repeats"), fx.Node) or (
        norm_dim(dim, len(shape_of(node.args[0]))) in spread_of(x).dims
    ):
        return prop.opaque(node)
    return x


def linear(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`F.linear(x, weight, bias)` on parameters read directly (BEiT's qkv). The graph slices the
    weight's columns (its get_attr dim) with x's channels; its rows, and so the output, stay."""
    x = prop.chan(node, node.args[0])
    last = len(shape_of(node.args[0])) - 1
    x = prop.retrack(x, last, shape_of(node.args[0])[last])
    weight = prop.info.get(call_arg(node, 1, "weight"))
    prop.pin_value(prop.info.get(call_arg(node, 2, "bias")))
    if x.stop <= last:  # channels tracked on another dim: the linear acts across them
        prop.pin_value(weight)
        return x
    if isinstance(weight, Chan) and weight.start == 1 and x.start == last and weight.ids.shape == x.ids.shape:
        prop.uf.union(x.ids, weight.ids)
    else:
        prop.pin_value(weight)
        prop.uf.pin(x.ids)
    return prop.fresh(node.meta.get("tensor_meta"), pinned=True)


def layer_norm(prop: ChannelPropagator, node: fx.Node) -> Any:
    x = prop.chan(node, node.args[0])
    ndim = len(shape_of(node.args[0]))
    shape = call_arg(node, 1, "normalized_shape")
    if x.stop <= ndim - len(shape):  # normalises dims without followed channels: its weight keeps them
        for index, name in ((2, "weight"), (3, "bias")):
            prop.pin_value(prop.info.get(call_arg(node, index, name)))
        return x
    ids = prop.channel_dim(node, x, ndim - 1, "layer_norm")
    _tie_params(prop, node, ids, (2, "weight"), (3, "bias"))
    return x


def group_norm(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`F.group_norm(x, num_groups, ...)`: num_groups is written in the code, so whole groups cannot
    go, and removing channels inside a group changes its statistics: with several groups the
    channels stay. One group normalises like a LayerNorm over the channels and prunes like one."""
    x = prop.chan(node, node.args[0])
    ids = prop.channel_dim(node, x, 1, "group_norm")
    if call_arg(node, 1, "num_groups") != 1:
        return prop.opaque(node)
    _tie_params(prop, node, ids, (2, "weight"), (3, "bias"))
    return x


def batch_norm(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`F.batch_norm(x, running_mean, running_var, weight, bias, ...)` on channel dim 1."""
    x = prop.chan(node, node.args[0])
    ids = prop.channel_dim(node, x, 1, "batch_norm")
    _tie_params(prop, node, ids, (1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))
    return x


def _tie_params(prop: ChannelPropagator, node: fx.Node, ids: torch.Tensor, *params: tuple[int, str]) -> None:
    """Per-channel tensors passed to a functional norm (weight, bias, statistics) follow `ids`."""
    for index, name in params:
        param = call_arg(node, index, name)
        if isinstance(param, fx.Node):
            prop.uf.union(ids, prop.chan(node, param).ids)


FUNCTIONS = {
    F.pad: pad, torch.roll: roll, torch.repeat_interleave: repeat_interleave, F.linear: linear,
    F.layer_norm: layer_norm, F.group_norm: group_norm, F.batch_norm: batch_norm,
}
METHODS = {"roll": roll, "repeat": repeat, "repeat_interleave": repeat_interleave}
