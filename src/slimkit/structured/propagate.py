"""Propagating channel ids through a traced graph, one fx node at a time, op family by op family.

Every handler returns the channel ids of its node's output (a `Chan`, a list for tuple outputs, a
`SizeOf` for sizes read from tensors, or None). When an op's effect is unknown but harmless to keep,
its channels are pinned (`opaque`); an unknown torch op is an error naming the node.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata
from torchvision.ops import stochastic_depth as _stochastic_depth

from slimkit.structured import attention, functional
from slimkit.structured.channels import (
    Chan, ChannelGraph, ChannelGraphError, ModuleRecord, SizeOf, Spread, UnionFind, Width, spread_of, tidy,
)
from slimkit.structured.fx_nodes import call_arg, describe, nodes_in, norm_dim, shape_of

# ---- op tables -------------------------------------------------------------------------------
_UNARY_FUNCS = {
    F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.sigmoid, torch.sigmoid, torch.tanh,
    F.tanh, F.dropout, F.leaky_relu, F.elu, F.selu, F.mish, F.hardtanh, F.softplus, torch.clamp, torch.clip,
    torch.neg, torch.exp, torch.abs, torch.sqrt, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d,
    F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.interpolate, operator.neg, torch.Tensor.contiguous,
    torch.sin, torch.cos, torch.log, torch.rsqrt, torch.reciprocal, torch.erf, torch.square, torch.sign,
    torch.floor, torch.round, operator.invert, torch.logical_not,
}
# torchvision wraps stochastic depth for fx: a per-sample scale, channels pass through
_UNARY_FUNCS.add(_stochastic_depth)
# new tensors shaped like their input: tying their channels to it is always safe
_UNARY_FUNCS |= {torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like, torch.rand_like, torch.randn_like}
# tensors made from sizes alone carry no channels of the model
_FACTORIES = {
    torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.linspace, torch.eye, torch.tensor,
    torch.rand, torch.randn,
}
_BINARY_FUNCS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul, operator.isub,
    torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum, torch.pow, operator.pow,
    torch.addcmul, torch.addcdiv, torch.where, torch.lerp,
}
_POINTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "contiguous", "clone", "float", "double", "half", "to",
    "type_as", "detach", "exp", "neg", "abs", "sqrt", "clamp", "clamp_", "clip", "add", "add_", "sub", "sub_",
    "mul", "mul_", "div", "div_", "pow", "expand_as", "masked_fill", "hardswish", "gelu",
    "sin", "cos", "log", "rsqrt", "reciprocal", "erf", "square", "sign", "floor", "round", "logical_not", "bool",
    "int", "long",
}
_REDUCE_FUNCS = {torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin", "std", "var"}
_RESHAPE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.unflatten}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "unflatten", "view_as", "reshape_as"}
_SHAPE_ARG_METHODS = {"view", "reshape"}
_PERMUTE = {torch.permute, torch.transpose, torch.movedim, torch.swapaxes, "permute", "transpose", "movedim", "swapaxes", "t"}
_MATMUL = {torch.matmul, torch.bmm, operator.matmul, "matmul", "bmm"}
_SPLITS = {torch.split, torch.chunk, torch.tensor_split, torch.unbind, "split", "chunk", "tensor_split", "unbind"}
_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU,
    nn.SELU, nn.Mish, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.Upsample, nn.ZeroPad2d, nn.ConstantPad2d,
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _meta_shapes(meta: Any) -> list[tuple[int, ...]]:
    """The tensor shapes in a (nested) ShapeProp result, in order."""
    if isinstance(meta, TensorMetadata):
        return [tuple(meta.shape)]
    items = meta.values() if isinstance(meta, dict) else meta if isinstance(meta, (list, tuple)) else []
    return [shape for item in items for shape in _meta_shapes(item)]


def _permutation(node: fx.Node, ndim: int) -> list[int]:
    """The dim order of a permute/transpose/swapaxes/t/movedim call."""
    target = node.target if isinstance(node.target, str) else node.target.__name__
    order = list(range(ndim))
    if target == "permute":
        dims = node.args[1:] if node.op == "call_method" else [node.args[1]]
        if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
            dims = dims[0]
        return [norm_dim(d, ndim) for d in dims]
    if target in ("transpose", "swapaxes", "t"):
        a, b = (0, 1) if target == "t" else (norm_dim(node.args[1], ndim), norm_dim(node.args[2], ndim))
        order[a], order[b] = order[b], order[a]
        return order
    src, dst = norm_dim(node.args[1], ndim), norm_dim(node.args[2], ndim)  # movedim
    order.remove(src)
    order.insert(dst, src)
    return order


class ChannelPropagator:
    """Walks the traced graph once, in topological order, giving every tensor its channel ids."""

    def __init__(self, gm: fx.GraphModule, model: nn.Module) -> None:
        self.gm, self.uf = gm, UnionFind()
        self.graph = ChannelGraph(model, self.uf)
        self.info: dict[fx.Node, Any] = {}
        self.model_tensors = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
        self.fixed_dims: list[tuple[str, int]] = []  # parameter dims a use read without following them
        self.width_lines: dict[int, torch.Tensor] = {}  # id(Width) -> ids along the dim it sizes

    # -- helpers
    def fresh(self, meta: Any, pinned: bool) -> Any:
        if isinstance(meta, TensorMetadata):
            shape = tuple(meta.shape)
            if not shape:
                return None
            dim = 1 if len(shape) >= 2 else 0
            chan = Chan(dim, self.uf.new((shape[dim],)))
            if pinned:
                self.uf.pin(chan.ids)
            return chan
        if isinstance(meta, (tuple, list)):
            return [self.fresh(m, pinned) for m in meta]
        if isinstance(meta, dict):
            return {k: self.fresh(m, pinned) for k, m in meta.items()}
        return None

    def pin_value(self, value: Any) -> None:
        if isinstance(value, (Chan, Spread)):
            self.uf.pin(value.ids)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self.pin_value(v)
        elif isinstance(value, dict):
            for v in value.values():
                self.pin_value(v)

    def pin_args(self, node: fx.Node) -> None:
        for arg in nodes_in((node.args, node.kwargs)):
            self.pin_value(self.info.get(arg))

    def opaque(self, node: fx.Node) -> Any:
        """Channels in and out of `node` are kept as they are (safe for any op)."""
        self.pin_args(node)
        self.graph.opaque.append(node.name)
        return self.fresh(node.meta.get("tensor_meta"), pinned=True)

    def record(self, qualname: str, dim: int, ids: torch.Tensor) -> None:
        key = (qualname, dim)
        if key in self.graph.tensors:  # a shared module/parameter used twice: both uses stay aligned
            self.uf.union(self.graph.tensors[key], ids)
        else:
            self.graph.tensors[key] = ids.flatten()

    def record_module(self, name: str, in_ids: torch.Tensor | None, out_ids: torch.Tensor | None) -> None:
        old = self.graph.modules.get(name)
        if old is not None:
            for a, b in ((old.in_ids, in_ids), (old.out_ids, out_ids)):
                if a is not None and b is not None:
                    self.uf.union(a, b)
            return
        self.graph.modules[name] = ModuleRecord(name, in_ids, out_ids)

    def value(self, node: fx.Node, arg: Any) -> Chan | Spread:
        value = self.info.get(arg) if isinstance(arg, fx.Node) else None
        if not isinstance(value, (Chan, Spread)):
            raise ChannelGraphError(f"{describe(node)}: expected a tensor input, got {arg!r}")
        return value

    def chan(self, node: fx.Node, arg: Any) -> Chan:
        """The input's ids on adjacent dims; channels spread over several dims are kept whole here."""
        value = self.value(node, arg)
        if isinstance(value, Spread):
            self.uf.pin(value.ids)
            fresh = self.uf.new(value.ids.shape[:1])
            self.uf.pin(fresh)
            return Chan(value.dims[0], fresh)
        return value

    def is_pinned(self, ids: torch.Tensor) -> bool:
        return all(self.uf.is_pinned(i) for i in ids.flatten().tolist())

    def tied_along(self, ids: torch.Tensor, axis: int) -> bool:
        """Every slice of `ids` along `axis` is the same units: that dim can never shrink."""
        roots = self.uf.roots(ids)
        return bool((roots == roots.narrow(axis, 0, 1)).all())

    def tidy(self, node: fx.Node, dims: Sequence[int], ids: torch.Tensor) -> Any:
        """The output's ids on `dims`; a result without channel dims gets fresh pinned ids."""
        return tidy(dims, ids) or self.fresh(node.meta.get("tensor_meta"), pinned=True)

    def retrack(self, chan: Chan, dim: int, size: int) -> Chan:
        """Channels that are all pinned carry no constraint: follow dim `dim` instead."""
        if (chan.start != dim or chan.ids.ndim != 1) and self.is_pinned(chan.ids):
            fresh = self.uf.new((size,))
            self.uf.pin(fresh)
            return Chan(dim, fresh)
        return chan

    def channel_dim(self, node: fx.Node, chan: Chan, dim: int, what: str, source: Any = None) -> torch.Tensor:
        """The ids of `chan` (of `source`, default the first argument) if it tracks exactly dim `dim`,
        else an error naming `node`."""
        shape = shape_of(node.args[0] if source is None else source)
        if shape is not None and dim < len(shape):
            chan = self.retrack(chan, dim, shape[dim])
        if chan.start != dim or chan.ids.ndim != 1:
            raise ChannelGraphError(
                f"{describe(node)}: {what} expects its channels in dim {dim}, but they are spread over dims "
                f"{chan.start}..{chan.stop - 1} here"
            )
        return chan.ids

    # -- the walk
    def run(self) -> ChannelGraph:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.info[node] = self.fresh(node.meta.get("tensor_meta"), pinned=True)
            elif node.op == "get_attr":
                self.info[node] = self.get_attr(node)
            elif node.op == "call_module":
                self.info[node] = self.call_module(node)
            elif node.op in ("call_function", "call_method"):
                self.info[node] = self.call(node)
            elif node.op == "output":
                self.pin_args(node)  # the model's outputs keep their shape
                self.graph.output_shapes = [s for n in nodes_in(node.args) for s in _meta_shapes(n.meta.get("tensor_meta"))]
        for key in self.fixed_dims:
            if key in self.graph.tensors:
                self.uf.pin(self.graph.tensors[key])
        return self.graph

    def get_attr(self, node: fx.Node) -> Any:
        """A parameter used directly: tracked (and sliced) along one dim, its others stay fixed.
        Constants fx made from code (`torch.ones(1, 1, 8)`) are fixed in every dim."""
        shape = shape_of(node)
        if shape is None or not shape:
            return None
        qualname = str(node.target)
        chan = self.fixed_tensor(shape, pinned=qualname not in self.model_tensors)
        if qualname in self.model_tensors:
            self.record(qualname, chan.start, chan.ids)
            self.fixed_dims += [(qualname, d) for d, size in enumerate(shape) if size > 1 and d != chan.start]
        return chan

    def fixed_tensor(self, shape: Sequence[int], pinned: bool) -> Chan:
        """Ids on a tensor's one dim longer than 1, or its last dim; fresh, optionally pinned."""
        big = [d for d, s in enumerate(shape) if s > 1]
        dim = big[0] if len(big) == 1 else len(shape) - 1
        chan = Chan(dim, self.uf.new((shape[dim],)))
        if pinned:
            self.uf.pin(chan.ids)
        return chan

    def call_module(self, node: fx.Node) -> Any:
        module = self.gm.get_submodule(str(node.target))
        name = str(node.target)
        meta = node.meta.get("tensor_meta")
        self.pin_sizes(node)
        if isinstance(module, _CONVS):
            x = self.chan(node, node.args[0])
            in_ids = self.channel_dim(node, x, 1, type(module).__name__)
            out_ids = self.uf.new((module.out_channels,))
            if module.groups > 1:  # whole groups are the unit: group g's inputs and outputs go together
                g = module.groups
                self.uf.union(in_ids.reshape(g, -1)[:, :1].expand(g, in_ids.numel() // g), in_ids.reshape(g, -1))
                self.uf.union(
                    in_ids.reshape(g, -1)[:, :1].expand(g, out_ids.numel() // g), out_ids.reshape(g, -1)
                )
            else:
                self.record(f"{name}.weight", 1, in_ids)
            self.record(f"{name}.weight", 0, out_ids)
            if module.bias is not None:
                self.record(f"{name}.bias", 0, out_ids)
            self.record_module(name, in_ids, out_ids)
            return Chan(1, out_ids)
        if isinstance(module, nn.Linear):
            x = self.chan(node, node.args[0])
            last = len(shape_of(node.args[0])) - 1
            x = self.retrack(x, last, shape_of(node.args[0])[last])
            if x.stop <= last:  # channels tracked on another dim: linear acts across, not on them
                return x
            in_ids = self.channel_dim(node, x, last, "Linear")
            out_ids = self.uf.new((module.out_features,))
            self.record(f"{name}.weight", 1, in_ids)
            self.record(f"{name}.weight", 0, out_ids)
            if module.bias is not None:
                self.record(f"{name}.bias", 0, out_ids)
            self.record_module(name, in_ids, out_ids)
            return Chan(last, out_ids)
        if isinstance(module, _BATCHNORMS):
            x = self.chan(node, node.args[0])
            ids = self.channel_dim(node, x, 1, type(module).__name__)
            self.norm_params(name, module, ids)
            return Chan(1, ids)
        if isinstance(module, nn.GroupNorm):
            x = self.chan(node, node.args[0])
            ids = self.channel_dim(node, x, 1, "GroupNorm")
            g = module.num_groups
            self.uf.union(ids.reshape(g, -1)[:, :1].expand(g, ids.numel() // g), ids.reshape(g, -1))
            self.norm_params(name, module, ids)
            return Chan(1, ids)
        if isinstance(module, nn.LayerNorm):
            x = self.chan(node, node.args[0])
            ndim = len(shape_of(node.args[0]))
            first_normed = ndim - len(module.normalized_shape)
            x = self.retrack(x, ndim - 1, shape_of(node.args[0])[-1])
            if x.stop <= first_normed:
                return x
            ids = self.channel_dim(node, x, ndim - 1, "LayerNorm")
            if len(module.normalized_shape) != 1:
                raise ChannelGraphError(f"{describe(node)}: LayerNorm over several dims including the channels")
            self.norm_params(name, module, ids)
            return Chan(ndim - 1, ids)
        if isinstance(module, nn.Flatten):
            return self.reshape(node, node.args[0])
        if isinstance(module, nn.ChannelShuffle):
            x = self.chan(node, node.args[0])
            ids = self.channel_dim(node, x, 1, "ChannelShuffle")
            return Chan(1, ids.reshape(module.groups, -1).t().reshape(-1))
        if isinstance(module, nn.MultiheadAttention):
            return attention.multihead_attention(self, node, module)
        if isinstance(module, attention.WINDOW_ATTENTION):
            return attention.window_attention(self, node, module)
        if isinstance(module, _PASS_MODULES):
            return self.broadcast(node, [node.args[0]])
        has_tensors = next(module.parameters(), None) is not None or next(module.buffers(), None) is not None
        in_shape = shape_of(node.args[0]) if node.args else None
        if not has_tensors and isinstance(meta, TensorMetadata) and tuple(meta.shape) == in_shape:
            return self.broadcast(node, [node.args[0]])  # parameter-free, shape-preserving: an activation
        return self.opaque(node)  # attention, custom or leaf layers: their channels stay as they are

    def norm_params(self, name: str, module: nn.Module, ids: torch.Tensor) -> None:
        for attr in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, attr, None) is not None:
                self.record(f"{name}.{attr}", 0, ids)
        self.record_module(name, ids, ids)

    def call(self, node: fx.Node) -> Any:
        target = node.target
        meta = node.meta.get("tensor_meta")
        is_method = node.op == "call_method"
        if meta is None and target is not operator.getitem:
            return self.size_value(node)  # sizes, asserts, python values: no channels
        if target is operator.getitem:
            return self.getitem(node)
        if not (target in _SHAPE_ARG_METHODS | {"unflatten", "expand"} and is_method or target in (
            torch.reshape, torch.unflatten
        ) or target in _SPLITS):  # reshapes, expands and splits check the sizes they are given
            self.pin_sizes(node)
        if is_method and target == "expand":
            out = self.broadcast(node, [node.args[0]])
            if isinstance(out, Chan):
                self.check_size_args(self.reshape_sizes(node, 0, len(meta.shape)) or node.args[1:2], out)
            else:
                self.pin_sizes(node)
            return out
        if target is getattr and node.args[1] in ("T", "mT", "H", "mH"):
            ndim = len(shape_of(node.args[0]))
            swapped = [*range(ndim - 2), ndim - 1, ndim - 2]
            return self.permute(node, list(reversed(range(ndim))) if node.args[1] in ("T", "H") else swapped)
        if (not is_method and target in _UNARY_FUNCS | _BINARY_FUNCS) or (is_method and target in _POINTWISE_METHODS):
            return self.broadcast(node, nodes_in((node.args, node.kwargs)))
        if target in ("softmax", "log_softmax", "cumsum", "cumprod") or target in (
            F.softmax, F.log_softmax, torch.softmax, torch.cumsum, torch.cumprod
        ):  # along one dim: channels in it are kept
            return self.dim_op(node)
        if target is F.normalize:  # F.normalize(x, p=2.0, dim=1)
            return self.dim_op(node, call_arg(node, 2, "dim", 1))
        if (is_method and target in _REDUCE_METHODS) or (not is_method and target in _REDUCE_FUNCS):
            return self.reduce(node)
        if target in (torch.norm, torch.linalg.vector_norm, "norm"):  # (x, p, dim, keepdim)
            return self.reduce(node, dim_index=2)
        if (is_method and target in _RESHAPE_METHODS) or (not is_method and target in _RESHAPE_FUNCS):
            return self.reshape(node, node.args[0])
        if target in _PERMUTE:
            return self.permute(node)
        if target in (torch.cat, torch.concat, torch.concatenate):
            return self.cat(node)
        if target is torch.stack:
            return self.stack(node)
        if target in _SPLITS:
            return self.split(node)
        if not is_method and target in _FACTORIES:  # sizes written in the code
            return self.fixed_tensor(meta.shape, pinned=True) if meta.shape else None
        handler = (functional.METHODS if is_method else functional.FUNCTIONS).get(target)
        if handler is not None:
            return handler(self, node)
        if target in _MATMUL:
            return attention.matmul(self, node)
        if target is F.scaled_dot_product_attention:
            return attention.scaled_dot_product_attention(self, node)
        if target is torch.einsum:  # arbitrary index algebra: the channels of its operands are kept
            return self.opaque(node)
        if node.op == "call_function" and target in attention.KNOWN_FUNCTIONS:
            return attention.KNOWN_FUNCTIONS[target](self, node)
        module = getattr(target, "__module__", None) or ""
        if node.op == "call_function" and module.split(".")[0] not in ("torch", "_operator", "operator", "math", "builtins"):
            return self.opaque(node)  # a library function kept whole by torch.fx.wrap: a leaf, like a leaf module
        raise ChannelGraphError(
            f"{describe(node)}: slimkit does not know how this op moves channels. Wrap the code that calls it "
            "in a module and pass that module's name in leaf_modules= (its channels are then kept as they are)"
        )

    def size_value(self, node: fx.Node) -> SizeOf | None:
        """Follow sizes read from tensors (`x.size(1)`, `x.shape[-1] // 2`) to the reshapes using them."""
        if node.op == "call_method" and node.target == "size" or node.target is getattr and node.args[1] == "shape":
            value = self.info.get(node.args[0])
            if not isinstance(value, (Chan, Spread)):
                return None
            ndim = len(shape_of(node.args[0]))
            dim = call_arg(node, 1, "dim") if node.target == "size" else None
            return self.size_of(value, None if dim is None else norm_dim(dim, ndim), ndim)
        sizes = [self.info.get(a) for a in nodes_in(node.args)]
        sizes = [v for v in sizes if isinstance(v, SizeOf) and v.dim is not None]
        if sizes and node.op == "call_function" and node.target in _BINARY_FUNCS | {operator.floordiv}:
            size, divisor = sizes[0], node.args[1] if len(node.args) > 1 else None
            per_head = (node.target is operator.floordiv and self.info.get(node.args[0]) is size and not size.derived
                        and isinstance(divisor, int) and not isinstance(divisor, Width) and divisor > 1)
            # `C // num_heads` is a per-head width, which a reshape can follow; other arithmetic cannot
            return SizeOf(size.chan, size.dim, size.ndim, derived=True, divisor=divisor if per_head else None)
        return None

    def size_of(self, value: Chan | Spread, dim: int | None, ndim: int) -> SizeOf:
        """A size read from a tensor. Sizes of spread-out channel dims are not followed: they pin."""
        if isinstance(value, Spread) and dim is not None:
            if dim in value.dims:
                self.uf.pin(value.ids)
            fresh = self.uf.new((1,))
            self.uf.pin(fresh)
            return SizeOf(Chan(dim, fresh), dim, ndim)
        return SizeOf(value, dim, ndim)

    def check_size_args(self, sizes: Sequence[Any], out: Chan) -> None:
        """A reshape whose sizes come from another tensor's channel dim must keep the two widths equal."""
        whole = self.info.get(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], fx.Node) else None
        if isinstance(whole, SizeOf) and whole.dim is None:  # `reshape(other.shape)`: all of other's dims
            src = whole.chan
            if isinstance(src, Chan) and (src.start, src.ids.shape) == (out.start, out.ids.shape):
                self.uf.union(src.ids, out.ids)
            else:
                self.uf.pin(out.ids)
                self.pin_value(src)
            return
        for d, arg in enumerate(sizes):
            value = self.info.get(arg) if isinstance(arg, fx.Node) else None
            if not isinstance(value, SizeOf) or value.dim is None:
                continue
            src = value.chan
            if not src.start <= value.dim < src.stop:
                continue
            if out.start <= d < out.stop:
                same = sorted(self.uf.find(i) for i in out.ids.flatten().tolist()) == sorted(
                    self.uf.find(i) for i in src.ids.flatten().tolist())
                if same or self.tie_width(value, out, d):
                    continue
                self.uf.pin(out.ids)
            self.uf.pin(src.ids)

    def tie_width(self, size: SizeOf, out: Chan, d: int) -> bool:
        """Reshaped dim `d` is `size` (a channel width C) or `C // k`: tie C's channels to the output
        dims that together hold C of them (d alone, or the head dims ending at d), so C and the
        reshape keep matching widths after pruning. False when the layout does not allow it."""
        src = size.chan
        if not isinstance(src, Chan) or size.derived and size.divisor is None or src.start != size.dim or (
            src.ids.ndim != 1
        ):
            return False
        width, last = src.ids.numel(), d - out.start
        first = next((a for a in range(last, -1, -1) if math.prod(out.ids.shape[a:last + 1]) >= width), None)
        if first is None or math.prod(out.ids.shape[first:last + 1]) != width or (first < last) != bool(size.divisor):
            return False
        rows = out.ids.movedim(tuple(range(first, last + 1)), tuple(range(out.ids.ndim - last - 1 + first, out.ids.ndim)))
        rows = rows.reshape(-1, width)
        self.uf.union(src.ids.expand_as(rows), rows)
        for axis in range(first, last):  # `C // k` heads: k is written in the code, so heads never shrink
            self.uf.union(out.ids.narrow(axis, 0, 1).expand_as(out.ids), out.ids)
        return True

    def own_fraction(self, size: SizeOf, x: Chan) -> bool:
        """`size` is `x`'s own channel count, or `// k` of it (`x.split(x.shape[1] // 2, 1)`)."""
        src = size.chan
        return (isinstance(src, Chan) and src.start == size.dim and src.ids.shape == x.ids.shape
                and torch.equal(self.uf.roots(src.ids), self.uf.roots(x.ids))
                and (not size.derived or size.divisor is not None))

    def pin_sizes(self, node: fx.Node) -> None:
        """Sizes read from channel dims and used by anything but a reshape (a scale, a new tensor's
        shape) would not follow pruning: their channels stay."""
        for value in (self.info.get(a) for a in nodes_in((node.args, node.kwargs))):
            if isinstance(value, SizeOf):
                src = spread_of(value.chan)
                if value.dim is None or value.dim in src.dims:
                    self.uf.pin(src.ids)

    # -- op families
    def broadcast(self, node: fx.Node, args: Sequence[Any]) -> Any:
        """Elementwise ops with broadcasting (also pooling: spatial dims change, channels do not)."""
        out_shape = shape_of(node)
        if out_shape is None:
            return self.opaque(node)
        inputs = [(a, spread_of(self.info.get(a))) for a in args if isinstance(a, fx.Node)]
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
                return self.opaque(node)
            out_dims = dims
            tied.append(spread.ids)
        if out_dims is None:
            return self.fresh(node.meta.get("tensor_meta"), pinned=True)
        for other in tied[1:]:
            self.uf.union(tied[0], other)
        return tidy(out_dims, tied[0])

    def dim_op(self, node: fx.Node, dim: int | None = None) -> Any:
        x = self.value(node, node.args[0])
        ndim = len(shape_of(node.args[0]))
        dim = norm_dim(call_arg(node, 1, "dim") if dim is None else dim, ndim)
        if dim in spread_of(x).dims:
            self.uf.pin(x.ids)  # softmax over channels: every channel changes every output
        return x

    def reduce(self, node: fx.Node, dim_index: int = 1) -> Any:
        x = self.chan(node, node.args[0])
        ndim = len(shape_of(node.args[0]))
        dims = call_arg(node, dim_index, "dim")
        keepdim = bool(call_arg(node, dim_index + 1, "keepdim", False))
        if dims is None:
            self.uf.pin(x.ids)
            return self.fresh(node.meta.get("tensor_meta"), pinned=True)
        dims = {norm_dim(d, ndim) for d in (dims if isinstance(dims, (list, tuple)) else [dims])}
        if any(x.start <= d < x.stop for d in dims):
            self.uf.pin(x.ids)  # a mean over channels changes when channels go
            return self.fresh(node.meta.get("tensor_meta"), pinned=True)
        if keepdim:
            return x
        return Chan(x.start - sum(d < x.start for d in dims), x.ids)

    def reshape(self, node: fx.Node, arg: Any) -> Any:
        """Any reshape keeps row-major element order: find where the channel block lands."""
        x = self.chan(node, arg)
        in_shape, out_shape = shape_of(arg), shape_of(node)
        pre, block = math.prod(in_shape[:x.start]), math.prod(in_shape[x.start:x.stop])
        starts = [a for a in range(len(out_shape) + 1) if math.prod(out_shape[:a]) == pre]
        start = next((a for a in reversed(starts) if a < len(out_shape)), None)
        stop = None
        if start is not None:
            stop = next((b for b in range(start + 1, len(out_shape) + 1)
                         if math.prod(out_shape[start:b]) % block == 0), None)
        if start is None or stop is None:
            self.uf.pin(x.ids)
            self.graph.opaque.append(node.name)
            return self.fresh(node.meta.get("tensor_meta"), pinned=True)
        repeat = math.prod(out_shape[start:stop]) // block
        ids = x.ids.flatten().repeat_interleave(repeat).reshape(out_shape[start:stop])
        if node.target in ("view_as", "reshape_as"):  # the sizes come from another tensor: tie its channels
            other = self.info.get(node.args[1])
            if isinstance(other, Chan) and (other.start, other.ids.shape) == (start, ids.shape):
                self.uf.union(other.ids, ids)
            else:
                self.pin_value(other)
                self.uf.pin(ids)
        sizes = self.reshape_sizes(node, len(in_shape), len(out_shape))
        if sizes is not None:
            block = range(start, stop)
            # A Width is an attribute rewritten after pruning (WIDTH_ATTRIBUTES). It follows the
            # channels when every other size of the block is a literal: those dims are tied across
            # below, so its dim shrinks uniformly (an inferred -1 could shrink instead).
            widths = [d for d in block if isinstance(sizes[d], Width) and not sizes[d].in_arithmetic]
            follows = [w for w in widths[:1] if all(
                isinstance(sizes[d], int) and sizes[d] >= 1 and d not in widths for d in block if d != w)]
            fixed = [d - start for d in block if isinstance(sizes[d], int) and sizes[d] > 1 and d not in follows]
            if len(fixed) == stop - start:
                self.uf.pin(ids)  # sizes written into the code cannot follow pruning
            for k in fixed:  # a fixed dim (e.g. shuffle groups) stays: prune across it uniformly
                self.uf.union(ids.narrow(k, 0, 1).expand_as(ids), ids)
            for d in follows:
                self.width_use(sizes[d], ids, d - start)
            self.check_size_args(sizes, Chan(start, ids))
        elif node.target in ("view", "reshape", torch.reshape) and len(node.args) == 2:
            self.check_size_args(node.args[1:2], Chan(start, ids))  # `reshape(other.shape)`
        return Chan(start, ids)

    @staticmethod
    def reshape_sizes(node: fx.Node, in_ndim: int, out_ndim: int) -> list[Any] | None:
        """The sizes a view/reshape/unflatten writes for each output dim (None: not written)."""
        if node.op == "call_method" and node.target in _SHAPE_ARG_METHODS | {"expand"} or node.target is torch.reshape:
            sizes = list(node.args[1:])
            if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
                sizes = list(sizes[0])
        elif node.target in ("unflatten", torch.unflatten):
            dim = norm_dim(call_arg(node, 1, "dim"), in_ndim)
            new = list(call_arg(node, 2, "sizes"))
            sizes = [None] * dim + new + [None] * (out_ndim - dim - len(new))
        else:
            return None
        return sizes if len(sizes) == out_ndim else None

    def width_use(self, width: Width, ids: torch.Tensor, axis: int) -> None:
        """Every use of one Width attribute must keep the same number of channels: tie them."""
        line = ids.movedim(axis, -1).reshape(-1, ids.shape[axis])[0]
        first = self.width_lines.setdefault(id(width), line)
        if first.shape == line.shape:
            self.uf.union(first, line)
        else:
            self.uf.pin(first)
            self.uf.pin(line)

    def permute(self, node: fx.Node, order: list[int] | None = None) -> Any:
        x = spread_of(self.value(node, node.args[0]))
        order = order or _permutation(node, len(shape_of(node.args[0])))
        return tidy([order.index(d) for d in x.dims], x.ids)  # channels on dims apart become a Spread

    def cat(self, node: fx.Node) -> Any:
        tensors = list(call_arg(node, 0, "tensors"))
        chans = [self.chan(node, t) for t in tensors]
        ndim = len(shape_of(node))
        dim = norm_dim(call_arg(node, 1, "dim", 0), ndim)
        first = chans[0]
        if all(c.start == dim and c.ids.ndim == 1 for c in chans):
            return Chan(dim, torch.cat([c.ids for c in chans]))
        if all(not (c.start <= dim < c.stop) and c.start == first.start and c.ids.shape == first.ids.shape
               for c in chans):
            for c in chans[1:]:
                self.uf.union(first.ids, c.ids)
            return first
        return self.opaque(node)

    def stack(self, node: fx.Node) -> Any:
        chans = [self.chan(node, t) for t in call_arg(node, 0, "tensors")]
        dim = norm_dim(call_arg(node, 1, "dim", 0), len(shape_of(node)))
        first = chans[0]
        if any(c.start != first.start or c.ids.shape != first.ids.shape for c in chans):
            return self.opaque(node)
        for c in chans[1:]:
            self.uf.union(first.ids, c.ids)
        return Chan(first.start + (dim <= first.start), first.ids)

    def split(self, node: fx.Node) -> Any:
        value = self.value(node, node.args[0])
        in_shape = shape_of(node.args[0])
        target = node.target if isinstance(node.target, str) else node.target.__name__
        dim = norm_dim(call_arg(node, 1 if target == "unbind" else 2, "dim", 0), len(in_shape))
        metas = node.meta.get("tensor_meta")
        spread = spread_of(value)
        if target == "unbind":
            return self.unbind(node, spread, dim)
        if dim not in spread.dims:
            return [value for _ in metas]
        if spread.ids.ndim != 1:
            return self.opaque(node)
        x = Chan(spread.dims[0], spread.ids)
        sizes = [meta.shape[dim] for meta in metas]
        amount = node.args[1] if len(node.args) > 1 else next(iter(node.kwargs.values()), None)
        # sizes (not a count) written in the code; a Width (WIDTH_ATTRIBUTES) is rewritten after pruning
        width = amount if isinstance(amount, Width) and not amount.in_arithmetic else None
        literal = target != "chunk" and not nodes_in(amount) and width is None
        size = self.info.get(amount) if isinstance(amount, fx.Node) else None
        pieces = x.ids.reshape(len(sizes), -1) if len(set(sizes)) == 1 else None
        if isinstance(amount, (list, tuple)) and nodes_in(amount):  # sizes read elsewhere: they stay
            self.pin_sizes(node)
            literal = True
        elif isinstance(size, SizeOf) and not self.own_fraction(size, x):
            src = size.chan
            if pieces is not None and not size.derived and isinstance(src, Chan) and src.start == size.dim and (
                src.ids.shape == pieces.shape[1:]
            ):  # pieces as wide as another tensor's channels (a GLU gate): tied to them
                self.uf.union(src.ids.expand_as(pieces), pieces)
            else:
                self.pin_sizes(node)
                literal = True
        if len(set(sizes)) != 1 or literal:
            self.uf.pin(x.ids)  # unequal pieces cannot follow pruning: the code fixes their sizes
        else:  # equal pieces stay equal only if position j goes from every piece at once
            pieces = x.ids.reshape(len(sizes), -1)
            self.uf.union(pieces[:1].expand_as(pieces), pieces)
            if width is not None:
                self.width_use(width, pieces, 1)
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        return [Chan(x.start, x.ids[offset:offset + size]) for offset, size in zip(offsets, sizes)]

    def unbind(self, node: fx.Node, x: Spread, dim: int) -> Any:
        """Slices along `dim`. A channel dim may be unbound only if it can never shrink (q, k, v of a
        fused projection are tied position by position), so that slice i stays slice i."""
        metas = node.meta["tensor_meta"]
        dims = [d - (d > dim) for d in x.dims if d != dim]
        if dim not in x.dims:
            return [tidy(dims, x.ids) for _ in metas]
        axis = x.dims.index(dim)
        if not self.tied_along(x.ids, axis):
            self.uf.pin(x.ids)
            return self.fresh(metas, pinned=True)
        return [tidy(dims, x.ids.select(axis, i)) or self.fresh(meta, pinned=True) for i, meta in enumerate(metas)]

    def getitem(self, node: fx.Node) -> Any:
        source, index = node.args
        value = self.info.get(source) if isinstance(source, fx.Node) else None
        if isinstance(value, (list, tuple)):
            return value[index]
        if isinstance(value, dict):
            return value.get(index)
        if isinstance(value, SizeOf):
            if value.dim is None and isinstance(index, int):
                return self.size_of(value.chan, norm_dim(index, value.ndim), value.ndim)
            return None
        if not isinstance(value, (Chan, Spread)):
            return None if node.meta.get("tensor_meta") is None else self.fresh(node.meta["tensor_meta"], True)
        x = spread_of(value)
        items = list(index) if isinstance(index, tuple) else [index]
        if any(isinstance(i, fx.Node) or not (i is None or i is Ellipsis or isinstance(i, (int, slice)))
               for i in items):
            return self.opaque(node)
        ndim = len(shape_of(source))
        if Ellipsis in items:
            at = items.index(Ellipsis)
            fill = ndim - sum(i is not None for i in items if i is not Ellipsis)
            items = items[:at] + [slice(None)] * fill + items[at + 1:]
        items += [slice(None)] * (ndim - sum(i is not None for i in items))
        in_dim = out_dim = 0
        dims: list[int] = []
        picks: list[tuple[int, int]] = []  # (axis of x.ids, index)
        for item in items:
            if item is None:
                out_dim += 1
                continue
            if in_dim in x.dims:
                axis = x.dims.index(in_dim)
                if isinstance(item, slice) and item == slice(None):
                    dims.append(out_dim)
                elif isinstance(item, int) and self.tied_along(x.ids, axis):
                    picks.append((axis, item))  # one slice of a dim that never shrinks (q = qkv[0])
                else:
                    self.uf.pin(x.ids)  # picking channels by index: keep them all
                    return self.fresh(node.meta.get("tensor_meta"), pinned=True)
            if not isinstance(item, int):
                out_dim += 1
            in_dim += 1
        ids = x.ids
        for axis, index in reversed(picks):
            ids = ids.select(axis, index)
        return self.tidy(node, dims, ids)
