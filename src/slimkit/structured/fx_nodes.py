"""Small readers of torch.fx nodes shared by the channel-graph handlers."""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch.fx.passes.shape_prop import TensorMetadata


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The tensor shape ShapeProp recorded for `node`, or None for non-tensors."""
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


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
