"""The data model of channel dependencies: per-tensor channel ids, a union-find over them, and the
finished graph (which tensor slices each id owns). Built by `slimkit.structured.trace`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn


class ChannelGraphError(ValueError):
    """The model contains an op whose effect on channels cannot be followed; names the fx node."""


@dataclass
class Chan:
    """Channel ids of a tensor: `ids` covers the contiguous dims `start .. start + ids.ndim`."""

    start: int
    ids: torch.Tensor

    @property
    def stop(self) -> int:
        return self.start + self.ids.ndim


class Width(int):
    """An int attribute that describes a width (e.g. ViT's `hidden_dim`), swapped in while tracing
    (declared with `register_width_attributes`).

    torch.fx bakes attribute values into the graph as constants, and a constant size in a reshape
    cannot follow pruning, so it pins its channels. A `Width` is still that int, but the reshape
    handler lets it follow the channels it sizes, and `remove_units` / `load_pruned_model` write
    the new width back (`sync_width_attributes`).

    Arithmetic on it (`self.head_dim ** -0.5` in forward) is baked into the graph as a constant
    too, but the pruned module recomputes it from the rewritten width: such a Width is marked
    `in_arithmetic` and then treated as a literal size.
    """

    in_arithmetic = False


def _marking(name: str):
    def op(self: Width, *args: object) -> object:
        self.in_arithmetic = True
        return getattr(int(self), name)(*args)

    return op


for _name in (
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
    "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__divmod__", "__pow__", "__rpow__", "__neg__",
    "__float__",
):
    setattr(Width, _name, _marking(_name))


@dataclass
class Spread:
    """Channel ids over dims that need not be adjacent (heads and head dims after attention's permute).

    `dims` ascend and `ids.shape` holds their sizes. Only the handlers that can follow such a layout
    (permutes, indexing, elementwise ops, matmul, attention) keep it; any other op keeps it whole.
    """

    dims: tuple[int, ...]
    ids: torch.Tensor


def spread_of(value: object) -> Spread | None:
    """`value`'s channel ids in the general (Spread) form, or None for non-tensors."""
    if isinstance(value, Spread):
        return value
    if isinstance(value, Chan):
        return Spread(tuple(range(value.start, value.stop)), value.ids)
    return None


def tidy(dims: Sequence[int], ids: torch.Tensor) -> Chan | Spread | None:
    """Sort `dims` (permuting `ids` to match); adjacent dims become a plain Chan, no dims None."""
    if not dims:
        return None
    order = sorted(range(len(dims)), key=lambda i: dims[i])
    dims, ids = [dims[i] for i in order], ids.permute(*order)
    if dims == list(range(dims[0], dims[0] + len(dims))):
        return Chan(dims[0], ids)
    return Spread(tuple(dims), ids)


@dataclass
class SizeOf:
    """A python int (or shape tuple when `dim` is None) read from a tensor's shape.

    `derived` after arithmetic; `divisor` when the arithmetic was `size // k` for a literal k (a
    per-head width such as `C // num_heads`), which a reshape can still follow.
    """

    chan: Chan | Spread
    dim: int | None
    ndim: int
    derived: bool = False
    divisor: int | None = None


@dataclass
class QueryScale:
    """Scaled dot-product attention's default scale is 1/sqrt(E) of the query width E at run time.

    After pruning E, the rows that produce the queries (`targets`: a tensor and its row indices) are
    multiplied by sqrt(E_new / E) so that the attention scores of the channels kept do not change.
    """

    ids: torch.Tensor  # the query ids, E last
    targets: list[tuple[str, torch.Tensor]]  # (tensor qualname, its dim-0 rows that hold queries)


class UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.pinned: set[int] = set()
        self._roots: torch.Tensor | None = None  # find() of every id, rebuilt after a union

    def new(self, shape: Sequence[int]) -> torch.Tensor:
        n = math.prod(shape)
        ids = torch.arange(len(self.parent), len(self.parent) + n).reshape(tuple(shape))
        self.parent.extend(range(len(self.parent), len(self.parent) + n))
        return ids

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: torch.Tensor, b: torch.Tensor) -> None:
        for x, y in zip(a.flatten().tolist(), b.flatten().tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self._roots = None
                self.parent[ry] = rx
                if ry in self.pinned:
                    self.pinned.add(rx)

    def pin(self, ids: torch.Tensor) -> None:
        self.pinned.update(self.find(i) for i in ids.flatten().tolist())

    def roots(self, ids: torch.Tensor) -> torch.Tensor:
        if self._roots is None or len(self._roots) != len(self.parent):
            self._roots = torch.tensor([self.find(i) for i in range(len(self.parent))], dtype=torch.long)
        return self._roots[ids]

    def is_pinned(self, root: int) -> bool:
        return self.find(root) in self.pinned


@dataclass
class ModuleRecord:
    """Channel ids of a module's input and output feature dimension (for fixing its attributes)."""

    name: str
    in_ids: torch.Tensor | None
    out_ids: torch.Tensor | None


@dataclass
class ChannelGroup:
    """Units (union-find roots) that touch the same set of tensor slices: one 'layer' for ranking."""

    units: torch.Tensor  # roots
    members: tuple[tuple[str, int], ...]  # (tensor qualname, dim)


@dataclass
class ChannelGraph:
    model: nn.Module
    uf: UnionFind
    tensors: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # (qualname, dim) -> ids
    modules: dict[str, ModuleRecord] = field(default_factory=dict)
    opaque: list[str] = field(default_factory=list)  # nodes whose channels were pinned, for reports
    query_scales: list[QueryScale] = field(default_factory=list)
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)  # of the traced example, for checks

    def groups(self) -> list[ChannelGroup]:
        """Prunable groups: unpinned units, grouped by the exact set of tensor slices they touch."""
        touched: dict[int, set[tuple[str, int]]] = {}
        for key, ids in self.tensors.items():
            for root in set(self.uf.roots(ids).flatten().tolist()):
                touched.setdefault(root, set()).add(key)
        by_key: dict[tuple, list[int]] = {}
        for root, keys in touched.items():
            if root not in self.uf.pinned:
                by_key.setdefault(tuple(sorted(keys)), []).append(root)
        return [ChannelGroup(torch.tensor(sorted(u)), k) for k, u in by_key.items()]

    def tensor(self, qualname: str) -> torch.Tensor:
        module_name, _, attr = qualname.rpartition(".")
        return getattr(self.model.get_submodule(module_name), attr)
