"""Which channels must be pruned together: a dependency graph built from a traced model.

Every channel of every traced tensor gets an integer id; ops that tie channels together (residual
add, concat, depthwise conv, BatchNorm, flatten into Linear, channel shuffle ...) merge ids in a
union-find. Each resulting class is one prunable *unit*: removing it removes the matching slices of
every parameter recorded against its ids. Ids that reach a model input or output, a layer the user
ignores, or an op whose channel semantics are opaque are *pinned* and never pruned. Tracking works
per element id (not per layer), so permutations such as channel shuffle and split/concat need no
special cases: the ids simply move with the data.

Capture lives in `slimkit.structured.trace.capture`, the walk in `trace.propagator`, and what each
op does in the handlers of `trace.ops`, looked up in one registry (`trace.registry`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from slimkit.structured.channels import (
    Chan, ChannelGraph, ChannelGraphError, ChannelGroup, ModuleRecord, SizeOf, UnionFind,
)
from slimkit.structured.trace.capture import capture, example_inputs
from slimkit.structured.trace.propagator import ChannelPropagator

__all__ = [
    "Chan", "ChannelGraph", "ChannelGraphError", "ChannelGroup", "ModuleRecord", "SizeOf", "UnionFind", "build_graph",
]


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
        with capture(model, examples, leaf_modules) as gm:
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
