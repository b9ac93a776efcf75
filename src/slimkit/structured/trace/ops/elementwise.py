"""Elementwise ops (activations, arithmetic, pooling), reductions, ops along one dim, and tensor
factories in the channel graph; also the fallback for modules no handler knows."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata
from torchvision.ops import stochastic_depth as _stochastic_depth

from slimkit.structured.channels import Chan, spread_of, tidy
from slimkit.structured.trace.fx_nodes import call_arg, nodes_in, norm_dim, shape_of
from slimkit.structured.trace.registry import register_function_handler, register_module_handler

if TYPE_CHECKING:
    from slimkit.structured.trace.propagator import ChannelPropagator

UNARY_FUNCS = {
    F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.sigmoid, torch.sigmoid, torch.tanh,
    F.tanh, F.dropout, F.leaky_relu, F.elu, F.selu, F.mish, F.hardtanh, F.softplus, torch.clamp, torch.clip,
    torch.neg, torch.exp, torch.abs, torch.sqrt, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d,
    F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.interpolate, operator.neg, torch.Tensor.contiguous,
    torch.sin, torch.cos, torch.log, torch.rsqrt, torch.reciprocal, torch.erf, torch.square, torch.sign,
    torch.floor, torch.round, operator.invert, torch.logical_not,
}
# torchvision wraps stochastic depth for fx: a per-sample scale, channels pass through
UNARY_FUNCS.add(_stochastic_depth)
# new tensors shaped like their input: tying their channels to it is always safe
UNARY_FUNCS |= {torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like, torch.rand_like, torch.randn_like}
# tensors made from sizes alone carry no channels of the model
FACTORIES = {
    torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.linspace, torch.eye, torch.tensor,
    torch.rand, torch.randn,
}
BINARY_FUNCS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul, operator.isub,
    torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum, torch.pow, operator.pow,
    torch.addcmul, torch.addcdiv, torch.where, torch.lerp,
}
POINTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "contiguous", "clone", "float", "double", "half", "to",
    "type_as", "detach", "exp", "neg", "abs", "sqrt", "clamp", "clamp_", "clip", "add", "add_", "sub", "sub_",
    "mul", "mul_", "div", "div_", "pow", "expand_as", "masked_fill", "hardswish", "gelu",
    "sin", "cos", "log", "rsqrt", "reciprocal", "erf", "square", "sign", "floor", "round", "logical_not", "bool",
    "int", "long",
}
REDUCE_FUNCS = {torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var}
REDUCE_METHODS = {"mean", "sum", "amax", "amin", "std", "var"}
ALONG_ONE_DIM = {"softmax", "log_softmax", "cumsum", "cumprod", F.softmax, F.log_softmax, torch.softmax, torch.cumsum,
                 torch.cumprod}
PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU,
    nn.SELU, nn.Mish, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.Upsample, nn.ZeroPad2d, nn.ConstantPad2d,
)


def broadcast(prop: ChannelPropagator, node: fx.Node, args: Sequence[Any]) -> Any:
    """Elementwise ops with broadcasting (also pooling: spatial dims change, channels do not)."""
    out_shape = shape_of(node)
    if out_shape is None:
        return prop.opaque(node)
    inputs = [(a, spread_of(prop.info.get(a))) for a in args if isinstance(a, fx.Node)]
    out_dims: tuple[int, ...] | None = None
    tied: list[torch.Tensor] = []
    for arg, spread in inputs:
        if spread is None:
            continue
        offset = len(out_shape) - len(shape_of(arg))
        dims = tuple(d + offset for d in spread.dims)
        target = tuple(out_shape[d] for d in dims)
        sizes = tuple(spread.ids.shape)
        if all(s == 1 for s in sizes) and any(t > 1 for t in target):
            continue  # broadcast along the channels: no constraint
        if target != sizes or out_dims not in (None, dims):
            return prop.opaque(node)
        out_dims = dims
        tied.append(spread.ids)
    if out_dims is None:
        return prop.fresh(node.meta.get("tensor_meta"), pinned=True)
    for other in tied[1:]:
        prop.uf.union(tied[0], other)
    return tidy(out_dims, tied[0])


def elementwise(prop: ChannelPropagator, node: fx.Node) -> Any:
    """Every tensor argument meets the others element by element."""
    return broadcast(prop, node, nodes_in((node.args, node.kwargs)))


def first_input_passes(prop: ChannelPropagator, node: fx.Node, module: nn.Module) -> Any:
    """Activations, pooling, dropout, padding of spatial dims: the channels pass through."""
    return broadcast(prop, node, [node.args[0]])


def any_module(prop: ChannelPropagator, node: fx.Node, module: nn.Module) -> Any:
    """The fallback for modules no handler knows: a parameter-free, shape-preserving layer is an
    activation; anything else (custom or leaf layers) keeps its channels as they are."""
    meta = node.meta.get("tensor_meta")
    has_tensors = next(module.parameters(), None) is not None or next(module.buffers(), None) is not None
    in_shape = shape_of(node.args[0]) if node.args else None
    if not has_tensors and isinstance(meta, TensorMetadata) and tuple(meta.shape) == in_shape:
        return broadcast(prop, node, [node.args[0]])
    return prop.opaque(node)


def dim_op(prop: ChannelPropagator, node: fx.Node, dim: int | None = None) -> Any:
    """softmax/cumsum along one dim: channels in that dim are kept."""
    x = prop.value(node, node.args[0])
    ndim = len(shape_of(node.args[0]))
    dim = norm_dim(call_arg(node, 1, "dim") if dim is None else dim, ndim)
    if dim in spread_of(x).dims:
        prop.uf.pin(x.ids)  # softmax over channels: every channel changes every output
    return x


def normalize(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`F.normalize(x, p=2.0, dim=1)`."""
    return dim_op(prop, node, call_arg(node, 2, "dim", 1))


def reduce(prop: ChannelPropagator, node: fx.Node, dim_index: int = 1) -> Any:
    x = prop.chan(node, node.args[0])
    ndim = len(shape_of(node.args[0]))
    dims = call_arg(node, dim_index, "dim")
    keepdim = bool(call_arg(node, dim_index + 1, "keepdim", False))
    if dims is None:
        prop.uf.pin(x.ids)
        return prop.fresh(node.meta.get("tensor_meta"), pinned=True)
    dims = {norm_dim(d, ndim) for d in (dims if isinstance(dims, (list, tuple)) else [dims])}
    if any(x.start <= d < x.stop for d in dims):
        prop.uf.pin(x.ids)  # a mean over channels changes when channels go
        return prop.fresh(node.meta.get("tensor_meta"), pinned=True)
    if keepdim:
        return x
    return Chan(x.start - sum(d < x.start for d in dims), x.ids)


def vector_norm(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`torch.norm(x, p, dim, keepdim)`: a reduction whose dims come third."""
    return reduce(prop, node, dim_index=2)


def factory(prop: ChannelPropagator, node: fx.Node) -> Any:
    """A tensor made from sizes written in the code: fixed in every dim."""
    shape = node.meta["tensor_meta"].shape
    return prop.fixed_tensor(shape, pinned=True) if shape else None


for _targets, _handler in (
    (UNARY_FUNCS | BINARY_FUNCS | POINTWISE_METHODS, elementwise), (ALONG_ONE_DIM, dim_op), ({F.normalize}, normalize),
    (REDUCE_FUNCS | REDUCE_METHODS, reduce), ({torch.norm, torch.linalg.vector_norm, "norm"}, vector_norm),
    (FACTORIES, factory),
):
    for _target in _targets:
        register_function_handler(_target, _handler)
for _module_type in PASS_MODULES:
    register_module_handler(_module_type, first_input_passes, leaf=False)
register_module_handler(nn.Module, any_module, leaf=False)
