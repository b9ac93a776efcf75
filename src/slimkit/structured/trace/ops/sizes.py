"""Sizes read from tensors in the channel graph (`x.size(1)`, `B, C, H, W = x.shape`, `C // heads`).

A channel count that reaches a reshape or split may follow pruning (the two widths are tied); one
used in anything else (a scale, a new tensor's shape) would be baked in, so its channels stay.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.fx as fx

from slimkit.structured.channels import Chan, SizeOf, Spread, Width, spread_of
from slimkit.structured.trace.fx_nodes import call_arg, nodes_in, norm_dim, shape_of
from slimkit.structured.trace.ops.elementwise import BINARY_FUNCS

if TYPE_CHECKING:
    from slimkit.structured.trace.propagator import ChannelPropagator


def size_value(prop: ChannelPropagator, node: fx.Node) -> SizeOf | None:
    """Follow sizes read from tensors (`x.size(1)`, `x.shape[-1] // 2`) to the reshapes using them."""
    if node.op == "call_method" and node.target == "size" or node.target is getattr and node.args[1] == "shape":
        value = prop.info.get(node.args[0])
        if not isinstance(value, (Chan, Spread)):
            return None
        ndim = len(shape_of(node.args[0]))
        dim = call_arg(node, 1, "dim") if node.target == "size" else None
        return size_of(prop, value, None if dim is None else norm_dim(dim, ndim), ndim)
    sizes = [prop.info.get(a) for a in nodes_in(node.args)]
    sizes = [v for v in sizes if isinstance(v, SizeOf) and v.dim is not None]
    if sizes and node.op == "call_function" and node.target in BINARY_FUNCS | {operator.floordiv}:
        size, divisor = sizes[0], node.args[1] if len(node.args) > 1 else None
        per_head = (node.target is operator.floordiv and prop.info.get(node.args[0]) is size and not size.derived
                    and isinstance(divisor, int) and not isinstance(divisor, Width) and divisor > 1)
        # `C // num_heads` is a per-head width, which a reshape can follow; other arithmetic cannot
        return SizeOf(size.chan, size.dim, size.ndim, derived=True, divisor=divisor if per_head else None)
    return None


def size_of(prop: ChannelPropagator, value: Chan | Spread, dim: int | None, ndim: int) -> SizeOf:
    """A size read from a tensor. Sizes of spread-out channel dims are not followed: they pin."""
    if isinstance(value, Spread) and dim is not None:
        if dim in value.dims:
            prop.uf.pin(value.ids)
        fresh = prop.uf.new((1,))
        prop.uf.pin(fresh)
        return SizeOf(Chan(dim, fresh), dim, ndim)
    return SizeOf(value, dim, ndim)


def check_size_args(prop: ChannelPropagator, sizes: Sequence[Any], out: Chan) -> None:
    """A reshape whose sizes come from another tensor's channel dim must keep the two widths equal."""
    whole = prop.info.get(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], fx.Node) else None
    if isinstance(whole, SizeOf) and whole.dim is None:  # `reshape(other.shape)`: all of other's dims
        src = whole.chan
        if isinstance(src, Chan) and (src.start, src.ids.shape) == (out.start, out.ids.shape):
            prop.uf.union(src.ids, out.ids)
        else:
            prop.uf.pin(out.ids)
            prop.pin_value(src)
        return
    for d, arg in enumerate(sizes):
        value = prop.info.get(arg) if isinstance(arg, fx.Node) else None
        if not isinstance(value, SizeOf) or value.dim is None:
            continue
        src = value.chan
        if not src.start <= value.dim < src.stop:
            continue
        if out.start <= d < out.stop:
            same = sorted(prop.uf.find(i) for i in out.ids.flatten().tolist()) == sorted(
                prop.uf.find(i) for i in src.ids.flatten().tolist())
            if same or tie_width(prop, value, out, d):
                continue
            prop.uf.pin(out.ids)
        prop.uf.pin(src.ids)


def tie_width(prop: ChannelPropagator, size: SizeOf, out: Chan, d: int) -> bool:
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
    prop.uf.union(src.ids.expand_as(rows), rows)
    for axis in range(first, last):  # `C // k` heads: k is written in the code, so heads never shrink
        prop.uf.union(out.ids.narrow(axis, 0, 1).expand_as(out.ids), out.ids)
    return True


def own_fraction(prop: ChannelPropagator, size: SizeOf, x: Chan) -> bool:
    """`size` is `x`'s own channel count, or `// k` of it (`x.split(x.shape[1] // 2, 1)`)."""
    src = size.chan
    return (isinstance(src, Chan) and src.start == size.dim and src.ids.shape == x.ids.shape
            and torch.equal(prop.uf.roots(src.ids), prop.uf.roots(x.ids))
            and (not size.derived or size.divisor is not None))


def pin_sizes(prop: ChannelPropagator, node: fx.Node) -> None:
    """Sizes read from channel dims and used by anything but a reshape (a scale, a new tensor's
    shape) would not follow pruning: their channels stay."""
    for value in (prop.info.get(a) for a in nodes_in((node.args, node.kwargs))):
        if isinstance(value, SizeOf):
            src = spread_of(value.chan)
            if value.dim is None or value.dim in src.dims:
                prop.uf.pin(src.ids)
