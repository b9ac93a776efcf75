"""Padding, rolling and tiling in the channel graph (`F.pad`, `roll`, `repeat`, `repeat_interleave`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F

from slimkit.structured.channels import Chan, spread_of, tidy
from slimkit.structured.trace.fx_nodes import call_arg, norm_dim, shape_of
from slimkit.structured.trace.registry import register_function_handler

if TYPE_CHECKING:
    from slimkit.structured.trace.propagator import ChannelPropagator


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


for _target, _handler in (
    (F.pad, pad), (torch.roll, roll), ("roll", roll), ("repeat", repeat), (torch.repeat_interleave, repeat_interleave),
    ("repeat_interleave", repeat_interleave),
):
    register_function_handler(_target, _handler)
