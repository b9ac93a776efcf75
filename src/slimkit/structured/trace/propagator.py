"""Propagating channel ids through a captured graph, one fx node at a time.

Each call is dispatched to the handler registered for it (`slimkit.structured.trace.registry`):
modules by class, functions and tensor methods by target. The handler returns the channel ids of
the node's output (see the registry for the contract). The helpers here are the toolkit that
handlers share. When an op's effect is unknown but harmless to keep, its channels are pinned
(`opaque`); an unknown torch op is an error naming the node.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from slimkit.structured.channels import Chan, ChannelGraph, ChannelGraphError, ModuleRecord, Spread, UnionFind, tidy
from slimkit.structured.trace import ops as _builtin_ops  # noqa: F401 - registers the built-in handlers
from slimkit.structured.trace.fx_nodes import describe, meta_shapes, nodes_in, shape_of, unknown_op
from slimkit.structured.trace.registry import function_entry, module_handler
from slimkit.structured.trace.ops.sizes import pin_sizes, size_value

# modules whose functions a torch.fx.wrap can hide: anything else kept as one call is a leaf
_TORCH_MODULES = ("torch", "_operator", "operator", "math", "builtins")


class ChannelPropagator:
    """Walks the traced graph once, in topological order, giving every tensor its channel ids."""

    def __init__(self, gm: fx.GraphModule, model: nn.Module) -> None:
        self.gm, self.uf = gm, UnionFind()
        self.graph = ChannelGraph(model, self.uf)
        self.info: dict[fx.Node, Any] = {}
        self.model_tensors = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
        self.fixed_dims: list[tuple[str, int]] = []  # parameter dims a use read without following them
        self.width_lines: dict[int, torch.Tensor] = {}  # id(Width) -> ids along the dim it sizes

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
                self.graph.output_shapes = [s for n in nodes_in(node.args) for s in meta_shapes(n.meta.get("tensor_meta"))]
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

    def call_module(self, node: fx.Node) -> Any:
        module = self.gm.get_submodule(str(node.target))
        pin_sizes(self, node)
        return module_handler(module)(self, node, module)

    def call(self, node: fx.Node) -> Any:
        target = node.target
        entry = function_entry(target)
        if node.meta.get("tensor_meta") is None and target is not operator.getitem:
            return size_value(self, node)  # sizes, asserts, python values: no channels
        if entry is None or not entry.follows_sizes:
            pin_sizes(self, node)
        if entry is not None:
            return entry.handler(self, node)
        module = getattr(target, "__module__", None) or ""
        if node.op == "call_function" and module.split(".")[0] not in _TORCH_MODULES:
            return self.opaque(node)  # a library function kept whole by torch.fx.wrap: a leaf, like a leaf module
        raise unknown_op(node)

    # -- handler toolkit
    def fresh(self, meta: Any, pinned: bool) -> Any:
        """New ids for a result whose channels come from nowhere (on dim 1, or dim 0 of a vector)."""
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

    def fixed_tensor(self, shape: Sequence[int], pinned: bool) -> Chan:
        """Ids on a tensor's one dim longer than 1, or its last dim; fresh, optionally pinned."""
        big = [d for d, s in enumerate(shape) if s > 1]
        dim = big[0] if len(big) == 1 else len(shape) - 1
        chan = Chan(dim, self.uf.new((shape[dim],)))
        if pinned:
            self.uf.pin(chan.ids)
        return chan

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
        """Tensor `qualname` is sliced along `dim` by `ids` when units are removed."""
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


