"""Convolutions and linear layers in the channel graph: they make new output channels, and their
inputs' channels index the weight's columns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from slimkit.structured.channels import Chan
from slimkit.structured.trace.fx_nodes import call_arg, shape_of
from slimkit.structured.trace.registry import register_function_handler, register_module_handler

if TYPE_CHECKING:
    from slimkit.structured.trace.propagator import ChannelPropagator


def conv(prop: ChannelPropagator, node: fx.Node, module: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> Any:
    """New output ids; input ids index `weight[:, i]`. Grouped (depthwise) convs: a whole group,
    its inputs and outputs, is one unit, so `groups` shrinks consistently."""
    name = str(node.target)
    x = prop.chan(node, node.args[0])
    in_ids = prop.channel_dim(node, x, 1, type(module).__name__)
    out_ids = prop.uf.new((module.out_channels,))
    if module.groups > 1:  # whole groups are the unit: group g's inputs and outputs go together
        g = module.groups
        prop.uf.union(in_ids.reshape(g, -1)[:, :1].expand(g, in_ids.numel() // g), in_ids.reshape(g, -1))
        prop.uf.union(in_ids.reshape(g, -1)[:, :1].expand(g, out_ids.numel() // g), out_ids.reshape(g, -1))
    else:
        prop.record(f"{name}.weight", 1, in_ids)
    prop.record(f"{name}.weight", 0, out_ids)
    if module.bias is not None:
        prop.record(f"{name}.bias", 0, out_ids)
    prop.record_module(name, in_ids, out_ids)
    return Chan(1, out_ids)


def linear(prop: ChannelPropagator, node: fx.Node, module: nn.Linear) -> Any:
    """Like a conv on the last dim; channels tracked on another dim pass through untouched."""
    name = str(node.target)
    x = prop.chan(node, node.args[0])
    last = len(shape_of(node.args[0])) - 1
    x = prop.retrack(x, last, shape_of(node.args[0])[last])
    if x.stop <= last:  # channels tracked on another dim: linear acts across, not on them
        return x
    in_ids = prop.channel_dim(node, x, last, "Linear")
    out_ids = prop.uf.new((module.out_features,))
    prop.record(f"{name}.weight", 1, in_ids)
    prop.record(f"{name}.weight", 0, out_ids)
    if module.bias is not None:
        prop.record(f"{name}.bias", 0, out_ids)
    prop.record_module(name, in_ids, out_ids)
    return Chan(last, out_ids)


def functional_linear(prop: ChannelPropagator, node: fx.Node) -> Any:
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


for _conv in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_module_handler(_conv, conv, leaf=False)
register_module_handler(nn.Linear, linear, leaf=False)
register_function_handler(F.linear, functional_linear)
