"""Which channels must be pruned together: a dependency graph built from a `torch.fx` trace.

Every channel of every traced tensor gets an integer id; ops that tie channels together (residual
add, concat, depthwise conv, BatchNorm, flatten into Linear, channel shuffle ...) merge ids in a
union-find. Each resulting class is one prunable *unit*: removing it removes the matching slices of
every parameter recorded against its ids. Ids that reach a model input or output, a layer the user
ignores, or an op whose channel semantics are opaque are *pinned* and never pruned. Tracking works
per element id (not per layer), so permutations such as channel shuffle and split/concat need no
special cases: the ids simply move with the data.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from slimkit.structured.attention import WINDOW_ATTENTION
from slimkit.structured.channels import (
    Chan, ChannelGraph, ChannelGraphError, ChannelGroup, ModuleRecord, SizeOf, UnionFind, Width, declared_widths,
)
from slimkit.structured.propagate import ChannelPropagator

__all__ = [
    "Chan", "ChannelGraph", "ChannelGraphError", "ChannelGroup", "ModuleRecord", "SizeOf", "UnionFind", "build_graph",
    "example_inputs", "trace",
]


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type, ...], leaf_names: set[str]) -> None:
        super().__init__()
        self.leaf_types, self.leaf_names = leaf_types, leaf_names

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaf_names or isinstance(m, self.leaf_types) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, leaf_modules: Iterable[str | type] = ()) -> fx.GraphModule:
    """Symbolically trace `model`; `leaf_modules` (names or types) are kept as opaque calls."""
    # Swin's window attention hides its heads inside one library call: handled as a whole layer.
    leaf_types = tuple(x for x in leaf_modules if isinstance(x, type)) + WINDOW_ATTENTION
    leaf_names = {x for x in leaf_modules if isinstance(x, str)}
    tracer = _Tracer(leaf_types, leaf_names)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, ... depending on the construct
        raise ChannelGraphError(
            f"torch.fx cannot trace {type(model).__name__}: {exc}. Name the untraceable submodules in "
            "leaf_modules= (their channels are then kept as they are)"
        ) from exc
    return fx.GraphModule(model, graph)


def example_inputs(input_shape: Sequence[int] | torch.Tensor | tuple, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
    """Inputs for tracing: a shape (without batch) becomes a random batch of 2 (1 would hide the batch dim)."""
    if isinstance(input_shape, torch.Tensor):
        return (input_shape,)
    if isinstance(input_shape, (tuple, list)) and input_shape and all(isinstance(x, torch.Tensor) for x in input_shape):
        return tuple(input_shape)
    if not input_shape or not all(isinstance(s, int) and s > 0 for s in input_shape):
        raise ValueError(f"input_shape must be positive ints without the batch dim, e.g. (3, 32, 32); got {input_shape}")
    return (torch.randn(batch_size, *input_shape),)


@contextmanager
def _widths_marked(model: nn.Module) -> Iterator[None]:
    """Swap the WIDTH_ATTRIBUTES of `model` for `Width` ints while tracing, then restore them."""
    saved: list[tuple[nn.Module, str, int]] = []
    for module in model.modules():
        for attr in declared_widths(module):
            value = getattr(module, attr)
            saved.append((module, attr, value))
            setattr(module, attr, Width(value))
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)


def build_graph(
    model: nn.Module,
    inputs: Sequence[int] | torch.Tensor | tuple,
    *,
    leaf_modules: Iterable[str | type] = (),
    ignored_layers: Iterable[str] = (),
) -> ChannelGraph:
    """Trace `model` on `inputs` (a shape without batch dim, or example tensors) into a ChannelGraph.

    `ignored_layers` (module names) keep all their channels; so do model inputs and outputs.
    """
    examples = example_inputs(inputs)
    was_training = model.training
    model.eval()
    try:
        with _widths_marked(model):
            gm = trace(model, leaf_modules)
            try:
                with torch.no_grad():
                    ShapeProp(gm).propagate(*examples)
            except Exception as exc:
                shapes = [tuple(t.shape) for t in examples]
                raise ValueError(f"input of shape {shapes} does not fit {type(model).__name__}: {exc}") from exc
            graph = ChannelPropagator(gm, model).run()
    finally:
        model.train(was_training)
    names = dict(model.named_modules())
    for name in ignored_layers:
        if name not in names:
            raise ValueError(f"ignored layer '{name}' is not a module of {type(model).__name__}")
        for (qualname, _), ids in graph.tensors.items():
            if qualname.rpartition(".")[0] == name:
                graph.uf.pin(ids)
    return graph
