"""Small readers of torch.fx nodes shared by the channel-graph handlers."""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch.fx.passes.shape_prop import TensorMetadata

from slimkit.structured.channels import ChannelGraphError


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The tensor shape ShapeProp recorded for `node`, or None for non-tensors."""
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def meta_shapes(meta: Any) -> list[tuple[int, ...]]:
    """The tensor shapes in a (nested) ShapeProp result, in order."""
    if isinstance(meta, TensorMetadata):
        return [tuple(meta.shape)]
    items = meta.values() if isinstance(meta, dict) else meta if isinstance(meta, (list, tuple)) else []
    return [shape for item in items for shape in meta_shapes(item)]


def norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def call_arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument `index` of the call, given by position or by `name`."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def nodes_in(value: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(value, out.append)
    return out


def describe(node: fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"fx node '{node.name}' ({node.op} {target})"


def unknown_op(node: fx.Node) -> ChannelGraphError:
    """The error for a torch op no handler is registered for."""
    return ChannelGraphError(
        f"{describe(node)}: slimkit does not know how this op moves channels. Register a handler for it "
        "(slimkit.structured.register_function_handler), or wrap the code that calls it in a module and pass "
        "that module's name in leaf_modules= (its channels are then kept as they are)"
    )
