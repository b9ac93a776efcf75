"""Normalisation layers in the channel graph, as modules and in functional form
(`F.layer_norm`/`F.group_norm`/`F.batch_norm` on the model's own parameters)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from slimkit.structured.channels import Chan, ChannelGraphError
from slimkit.structured.trace.fx_nodes import call_arg, describe, shape_of
from slimkit.structured.trace.registry import register_function_handler, register_module_handler

if TYPE_CHECKING:
    from slimkit.structured.trace.propagator import ChannelPropagator


def _record_norm(prop: ChannelPropagator, name: str, module: nn.Module, ids: torch.Tensor) -> None:
    for attr in ("weight", "bias", "running_mean", "running_var"):
        if getattr(module, attr, None) is not None:
            prop.record(f"{name}.{attr}", 0, ids)
    prop.record_module(name, ids, ids)


def batch_norm(prop: ChannelPropagator, node: fx.Node, module: nn.Module) -> Any:
    """BatchNorm and InstanceNorm on channel dim 1: their tensors share their input's ids."""
    x = prop.chan(node, node.args[0])
    ids = prop.channel_dim(node, x, 1, type(module).__name__)
    _record_norm(prop, str(node.target), module, ids)
    return Chan(1, ids)


def group_norm(prop: ChannelPropagator, node: fx.Node, module: nn.GroupNorm) -> Any:
    """Whole groups are the unit (removing channels inside a group would change its statistics)."""
    x = prop.chan(node, node.args[0])
    ids = prop.channel_dim(node, x, 1, "GroupNorm")
    g = module.num_groups
    prop.uf.union(ids.reshape(g, -1)[:, :1].expand(g, ids.numel() // g), ids.reshape(g, -1))
    _record_norm(prop, str(node.target), module, ids)
    return Chan(1, ids)


def layer_norm(prop: ChannelPropagator, node: fx.Node, module: nn.LayerNorm) -> Any:
    """LayerNorm over the last dim; one over dims without followed channels lets them pass."""
    x = prop.chan(node, node.args[0])
    ndim = len(shape_of(node.args[0]))
    first_normed = ndim - len(module.normalized_shape)
    x = prop.retrack(x, ndim - 1, shape_of(node.args[0])[-1])
    if x.stop <= first_normed:
        return x
    ids = prop.channel_dim(node, x, ndim - 1, "LayerNorm")
    if len(module.normalized_shape) != 1:
        raise ChannelGraphError(f"{describe(node)}: LayerNorm over several dims including the channels")
    _record_norm(prop, str(node.target), module, ids)
    return Chan(ndim - 1, ids)


def functional_layer_norm(prop: ChannelPropagator, node: fx.Node) -> Any:
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


def functional_group_norm(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`F.group_norm(x, num_groups, ...)`: num_groups is written in the code, so whole groups cannot
    go, and removing channels inside a group changes its statistics: with several groups the
    channels stay. One group normalises like a LayerNorm over the channels and prunes like one."""
    x = prop.chan(node, node.args[0])
    ids = prop.channel_dim(node, x, 1, "group_norm")
    if call_arg(node, 1, "num_groups") != 1:
        return prop.opaque(node)
    _tie_params(prop, node, ids, (2, "weight"), (3, "bias"))
    return x


def functional_batch_norm(prop: ChannelPropagator, node: fx.Node) -> Any:
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


for _norm in (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm):
    register_module_handler(_norm, batch_norm, leaf=False)
register_module_handler(nn.GroupNorm, group_norm, leaf=False)
register_module_handler(nn.LayerNorm, layer_norm, leaf=False)
register_function_handler(F.layer_norm, functional_layer_norm)
register_function_handler(F.group_norm, functional_group_norm)
register_function_handler(F.batch_norm, functional_batch_norm)
