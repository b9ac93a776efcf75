"""Graph capture: the model as a `torch.fx` graph whose nodes carry their tensor shapes.

`capture` is the one entry point the channel graph uses, so another capture method (torch.export)
can replace it here without touching the op handlers.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from slimkit.structured.channels import ChannelGraphError, Width
from slimkit.structured.trace.registry import declared_widths, leaf_module_types

__all__ = ["capture", "example_inputs", "trace"]


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type, ...], leaf_names: set[str]) -> None:
        super().__init__()
        self.leaf_types, self.leaf_names = leaf_types, leaf_names

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaf_names or isinstance(m, self.leaf_types) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, leaf_modules: Iterable[str | type] = ()) -> fx.GraphModule:
    """Symbolically trace `model`; `leaf_modules` (names or types) are kept as opaque calls, and so
    are the module classes registered as leaves (`register_module_handler`), e.g. Swin's window
    attention, which hides its heads inside one library call."""
    leaf_types = tuple(x for x in leaf_modules if isinstance(x, type)) + leaf_module_types()
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
    """Swap the declared width attributes of `model` for `Width` ints while tracing, then restore them."""
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


@contextmanager
def capture(
    model: nn.Module, examples: tuple[torch.Tensor, ...], leaf_modules: Iterable[str | type] = ()
) -> Iterator[fx.GraphModule]:
    """The traced `model` with shapes from running `examples` (in the caller's mode, without grad).

    A context: the model's width attributes stay marked as `Width` until it closes.
    """
    with _widths_marked(model):
        gm = trace(model, leaf_modules)
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(*examples)
        except Exception as exc:
            shapes = [tuple(t.shape) for t in examples]
            raise ValueError(f"input of shape {shapes} does not fit {type(model).__name__}: {exc}") from exc
        yield gm
