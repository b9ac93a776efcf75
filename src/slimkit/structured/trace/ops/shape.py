"""Ops that move elements in the channel graph: view/reshape/flatten, permute/transpose, expand,
cat/stack, split/chunk/unbind and indexing, plus nn.Flatten and nn.ChannelShuffle.

Any reshape keeps row-major element order, so channel ids simply move with the data: channel
shuffle (view, transpose, view) and split/concat need no special cases.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch import nn

from slimkit.structured.channels import Chan, SizeOf, Spread, Width, spread_of, tidy
from slimkit.structured.trace.fx_nodes import call_arg, nodes_in, norm_dim, shape_of, unknown_op
from slimkit.structured.trace.ops.elementwise import broadcast
from slimkit.structured.trace.ops.sizes import check_size_args, own_fraction, pin_sizes, size_of
from slimkit.structured.trace.registry import register_function_handler, register_module_handler

if TYPE_CHECKING:
    from slimkit.structured.trace.propagator import ChannelPropagator

RESHAPE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.unflatten}
RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "unflatten", "view_as", "reshape_as"}
# reshapes that are given sizes, which they check themselves (see `check_size_args`)
SIZED_RESHAPES = {"view", "reshape", "unflatten", torch.reshape, torch.unflatten}
_SHAPE_ARG_METHODS = {"view", "reshape"}
PERMUTES = {torch.permute, torch.transpose, torch.movedim, torch.swapaxes, "permute", "transpose", "movedim", "swapaxes",
            "t"}
SPLITS = {torch.split, torch.chunk, torch.tensor_split, torch.unbind, "split", "chunk", "tensor_split", "unbind"}


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


def reshape(prop: ChannelPropagator, node: fx.Node, arg: Any = None) -> Any:
    """Any reshape keeps row-major element order: find where the channel block lands."""
    arg = node.args[0] if arg is None else arg
    x = prop.chan(node, arg)
    in_shape, out_shape = shape_of(arg), shape_of(node)
    pre, block = math.prod(in_shape[:x.start]), math.prod(in_shape[x.start:x.stop])
    starts = [a for a in range(len(out_shape) + 1) if math.prod(out_shape[:a]) == pre]
    start = next((a for a in reversed(starts) if a < len(out_shape)), None)
    stop = None
    if start is not None:
        stop = next((b for b in range(start + 1, len(out_shape) + 1)
                     if math.prod(out_shape[start:b]) % block == 0), None)
    if start is None or stop is None:
        prop.uf.pin(x.ids)
        prop.graph.opaque.append(node.name)
        return prop.fresh(node.meta.get("tensor_meta"), pinned=True)
    repeat = math.prod(out_shape[start:stop]) // block
    ids = x.ids.flatten().repeat_interleave(repeat).reshape(out_shape[start:stop])
    if node.target in ("view_as", "reshape_as"):  # the sizes come from another tensor: tie its channels
        other = prop.info.get(node.args[1])
        if isinstance(other, Chan) and (other.start, other.ids.shape) == (start, ids.shape):
            prop.uf.union(other.ids, ids)
        else:
            prop.pin_value(other)
            prop.uf.pin(ids)
    sizes = reshape_sizes(node, len(in_shape), len(out_shape))
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
            prop.uf.pin(ids)  # sizes written into the code cannot follow pruning
        for k in fixed:  # a fixed dim (e.g. shuffle groups) stays: prune across it uniformly
            prop.uf.union(ids.narrow(k, 0, 1).expand_as(ids), ids)
        for d in follows:
            width_use(prop, sizes[d], ids, d - start)
        check_size_args(prop, sizes, Chan(start, ids))
    elif node.target in ("view", "reshape", torch.reshape) and len(node.args) == 2:
        check_size_args(prop, node.args[1:2], Chan(start, ids))  # `reshape(other.shape)`
    return Chan(start, ids)


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


def width_use(prop: ChannelPropagator, width: Width, ids: torch.Tensor, axis: int) -> None:
    """Every use of one Width attribute must keep the same number of channels: tie them."""
    line = ids.movedim(axis, -1).reshape(-1, ids.shape[axis])[0]
    first = prop.width_lines.setdefault(id(width), line)
    if first.shape == line.shape:
        prop.uf.union(first, line)
    else:
        prop.uf.pin(first)
        prop.uf.pin(line)


def expand(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`x.expand(*sizes)`: broadcasting; sizes read from channel dims must match the channels."""
    out = broadcast(prop, node, [node.args[0]])
    if isinstance(out, Chan):
        check_size_args(prop, reshape_sizes(node, 0, len(node.meta["tensor_meta"].shape)) or node.args[1:2], out)
    else:
        pin_sizes(prop, node)
    return out


def permute(prop: ChannelPropagator, node: fx.Node, order: list[int] | None = None) -> Any:
    x = spread_of(prop.value(node, node.args[0]))
    order = order or _permutation(node, len(shape_of(node.args[0])))
    return tidy([order.index(d) for d in x.dims], x.ids)  # channels on dims apart become a Spread


def attribute(prop: ChannelPropagator, node: fx.Node) -> Any:
    """`x.T`, `x.mT`, `x.H`, `x.mH`: permutes. Other tensor attributes are unknown ops."""
    if node.args[1] not in ("T", "mT", "H", "mH"):
        raise unknown_op(node)
    ndim = len(shape_of(node.args[0]))
    swapped = [*range(ndim - 2), ndim - 1, ndim - 2]
    return permute(prop, node, list(reversed(range(ndim))) if node.args[1] in ("T", "H") else swapped)


def cat(prop: ChannelPropagator, node: fx.Node) -> Any:
    tensors = list(call_arg(node, 0, "tensors"))
    chans = [prop.chan(node, t) for t in tensors]
    ndim = len(shape_of(node))
    dim = norm_dim(call_arg(node, 1, "dim", 0), ndim)
    first = chans[0]
    if all(c.start == dim and c.ids.ndim == 1 for c in chans):
        return Chan(dim, torch.cat([c.ids for c in chans]))
    if all(not (c.start <= dim < c.stop) and c.start == first.start and c.ids.shape == first.ids.shape
           for c in chans):
        for c in chans[1:]:
            prop.uf.union(first.ids, c.ids)
        return first
    return prop.opaque(node)


def stack(prop: ChannelPropagator, node: fx.Node) -> Any:
    chans = [prop.chan(node, t) for t in call_arg(node, 0, "tensors")]
    dim = norm_dim(call_arg(node, 1, "dim", 0), len(shape_of(node)))
    first = chans[0]
    if any(c.start != first.start or c.ids.shape != first.ids.shape for c in chans):
        return prop.opaque(node)
    for c in chans[1:]:
        prop.uf.union(first.ids, c.ids)
    return Chan(first.start + (dim <= first.start), first.ids)


def split(prop: ChannelPropagator, node: fx.Node) -> Any:
    value = prop.value(node, node.args[0])
    in_shape = shape_of(node.args[0])
    target = node.target if isinstance(node.target, str) else node.target.__name__
    dim = norm_dim(call_arg(node, 1 if target == "unbind" else 2, "dim", 0), len(in_shape))
    metas = node.meta.get("tensor_meta")
    spread = spread_of(value)
    if target == "unbind":
        return unbind(prop, node, spread, dim)
    if dim not in spread.dims:
        return [value for _ in metas]
    if spread.ids.ndim != 1:
        return prop.opaque(node)
    x = Chan(spread.dims[0], spread.ids)
    sizes = [meta.shape[dim] for meta in metas]
    amount = node.args[1] if len(node.args) > 1 else next(iter(node.kwargs.values()), None)
    # sizes (not a count) written in the code; a Width (WIDTH_ATTRIBUTES) is rewritten after pruning
    width = amount if isinstance(amount, Width) and not amount.in_arithmetic else None
    literal = target != "chunk" and not nodes_in(amount) and width is None
    size = prop.info.get(amount) if isinstance(amount, fx.Node) else None
    pieces = x.ids.reshape(len(sizes), -1) if len(set(sizes)) == 1 else None
    if isinstance(amount, (list, tuple)) and nodes_in(amount):  # sizes read elsewhere: they stay
        pin_sizes(prop, node)
        literal = True
    elif isinstance(size, SizeOf) and not own_fraction(prop, size, x):
        src = size.chan
        if pieces is not None and not size.derived and isinstance(src, Chan) and src.start == size.dim and (
            src.ids.shape == pieces.shape[1:]
        ):  # pieces as wide as another tensor's channels (a GLU gate): tied to them
            prop.uf.union(src.ids.expand_as(pieces), pieces)
        else:
            pin_sizes(prop, node)
            literal = True
    if len(set(sizes)) != 1 or literal:
        prop.uf.pin(x.ids)  # unequal pieces cannot follow pruning: the code fixes their sizes
    else:  # equal pieces stay equal only if position j goes from every piece at once
        pieces = x.ids.reshape(len(sizes), -1)
        prop.uf.union(pieces[:1].expand_as(pieces), pieces)
        if width is not None:
            width_use(prop, width, pieces, 1)
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    return [Chan(x.start, x.ids[offset:offset + size]) for offset, size in zip(offsets, sizes)]


def unbind(prop: ChannelPropagator, node: fx.Node, x: Spread, dim: int) -> Any:
    """Slices along `dim`. A channel dim may be unbound only if it can never shrink (q, k, v of a
    fused projection are tied position by position), so that slice i stays slice i."""
    metas = node.meta["tensor_meta"]
    dims = [d - (d > dim) for d in x.dims if d != dim]
    if dim not in x.dims:
        return [tidy(dims, x.ids) for _ in metas]
    axis = x.dims.index(dim)
    if not prop.tied_along(x.ids, axis):
        prop.uf.pin(x.ids)
        return prop.fresh(metas, pinned=True)
    return [tidy(dims, x.ids.select(axis, i)) or prop.fresh(meta, pinned=True) for i, meta in enumerate(metas)]


def getitem(prop: ChannelPropagator, node: fx.Node) -> Any:
    """An item of a tuple output (split pieces, sizes), or tensor indexing (`x[:, 0]`, `qkv[0]`)."""
    source, index = node.args
    value = prop.info.get(source) if isinstance(source, fx.Node) else None
    if isinstance(value, (list, tuple)):
        return value[index]
    if isinstance(value, dict):
        return value.get(index)
    if isinstance(value, SizeOf):
        if value.dim is None and isinstance(index, int):
            return size_of(prop, value.chan, norm_dim(index, value.ndim), value.ndim)
        return None
    if not isinstance(value, (Chan, Spread)):
        return None if node.meta.get("tensor_meta") is None else prop.fresh(node.meta["tensor_meta"], True)
    x = spread_of(value)
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, fx.Node) or not (i is None or i is Ellipsis or isinstance(i, (int, slice)))
           for i in items):
        return prop.opaque(node)
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
            elif isinstance(item, int) and prop.tied_along(x.ids, axis):
                picks.append((axis, item))  # one slice of a dim that never shrinks (q = qkv[0])
            else:
                prop.uf.pin(x.ids)  # picking channels by index: keep them all
                return prop.fresh(node.meta.get("tensor_meta"), pinned=True)
        if not isinstance(item, int):
            out_dim += 1
        in_dim += 1
    ids = x.ids
    for axis, index in reversed(picks):
        ids = ids.select(axis, index)
    return prop.tidy(node, dims, ids)


def flatten_module(prop: ChannelPropagator, node: fx.Node, module: nn.Module) -> Any:
    return reshape(prop, node)


def channel_shuffle(prop: ChannelPropagator, node: fx.Node, module: nn.ChannelShuffle) -> Any:
    x = prop.chan(node, node.args[0])
    ids = prop.channel_dim(node, x, 1, "ChannelShuffle")
    return Chan(1, ids.reshape(module.groups, -1).t().reshape(-1))


for _target in RESHAPE_FUNCS | RESHAPE_METHODS:
    register_function_handler(_target, reshape, follows_sizes=_target in SIZED_RESHAPES)
for _target in PERMUTES:
    register_function_handler(_target, permute)
for _target in SPLITS:
    register_function_handler(_target, split, follows_sizes=True)
for _target in (torch.cat, torch.concat, torch.concatenate):
    register_function_handler(_target, cat)
register_function_handler(torch.stack, stack)
register_function_handler("expand", expand, follows_sizes=True)
register_function_handler(getattr, attribute)
register_function_handler(operator.getitem, getitem, follows_sizes=True)
register_module_handler(nn.Flatten, flatten_module, leaf=False)
register_module_handler(nn.ChannelShuffle, channel_shuffle, leaf=False)
