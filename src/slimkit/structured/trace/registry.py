"""The one registry of what the channel graph knows: op handlers and width attributes.

Every op the propagator follows is looked up here, built-in ones (registered by
`slimkit.structured.trace.ops`) and a user's alike:

- `register_module_handler(ModuleType, handler)`: a layer the tracer keeps whole (a *leaf*). The
  handler of the nearest class in the module's MRO applies, so a subclass inherits its parent's
  handler and a registration for the subclass overrides it. `nn.Module` itself holds the fallback
  (parameter-free, shape-keeping layers pass their channels; others keep them).
- `register_function_handler(target, handler)`: a function (`torch.cat`, `F.pad`, your own
  `torch.fx.wrap`ped function) or a tensor method, named by its string (`"view"`).
- `register_width_attributes(ModuleType, {"attr": rule})`: int attributes that size a reshape in
  the module's forward (`self.head_dim`), followed while tracing and rewritten after pruning.

Handler contract. `handler(prop, node)` for functions and methods, `handler(prop, node, module)`
for modules, where `prop` is the `ChannelPropagator` walking the graph and `node` the `torch.fx`
call. `prop.info[arg]` holds the channel ids of each input node. The handler returns the ids of
the node's output: a `Chan` (ids on adjacent dims), a `Spread`, a list or dict for several
outputs, a `SizeOf` for sizes, or None. It ties ids that must be pruned together with
`prop.uf.union`, pins those that must stay with `prop.uf.pin` (or returns `prop.opaque(node)`),
and records the parameter slices that each id owns with `prop.record(qualname, dim, ids)` (what
pruning then cuts) and a layer's input/output ids with `prop.record_module`. Registering a target
again replaces its handler, built-in ones included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar, Union

import torch.fx as fx
from torch import nn

if TYPE_CHECKING:
    from slimkit.structured.trace.propagator import ChannelPropagator

ModuleHandler = Callable[["ChannelPropagator", fx.Node, nn.Module], Any]
FunctionHandler = Callable[["ChannelPropagator", fx.Node], Any]
# A width attribute's value after pruning: the dim 0 of a parameter (its qualname in the module),
# or a function of the pruned module.
WidthRule = Union[str, Callable[[nn.Module], int]]
H = TypeVar("H", bound=Callable[..., Any])

__all__ = [
    "WIDTH_ATTRIBUTES", "FunctionEntry", "WidthRule", "declared_width", "declared_widths", "function_entry",
    "leaf_module_types", "module_handler", "register_function_handler", "register_module_handler",
    "register_width_attributes",
]


@dataclass(frozen=True)
class FunctionEntry:
    handler: FunctionHandler
    # False: sizes read from tensors (`x.size(1)`) and passed to the op pin the channels they count,
    # as the op would bake them in. True for ops whose handler ties such sizes itself (reshape, split).
    follows_sizes: bool = False


_MODULE_HANDLERS: dict[type, ModuleHandler] = {}
_LEAF_TYPES: dict[type, None] = {}  # ordered set: classes the tracer keeps whole
_FUNCTION_HANDLERS: dict[Any, FunctionEntry] = {}
# Keys are classes, or "module.Class" paths for libraries slimkit does not import (timm).
WIDTH_ATTRIBUTES: dict[type | str, dict[str, WidthRule]] = {}


def _check_handler(handler: Any, what: str) -> None:
    if not callable(handler):
        raise TypeError(f"the handler for {what} must be callable, got {handler!r}")


def register_module_handler(module_type: type, handler: H | None = None, *, leaf: bool = True) -> Any:
    """Follow `module_type` (and its subclasses) with `handler(prop, node, module)`.

    `leaf=True` makes the tracer keep such modules whole so that the handler sees them; torch.nn
    layers are leaves already (pass False to leave tracing as it is). Usable as a decorator.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register_module_handler needs an nn.Module subclass, got {module_type!r}")

    def register(fn: H) -> H:
        _check_handler(fn, module_type.__name__)
        _MODULE_HANDLERS[module_type] = fn
        if leaf:
            _LEAF_TYPES[module_type] = None
        else:
            _LEAF_TYPES.pop(module_type, None)
        return fn

    return register if handler is None else register(handler)


def register_function_handler(target: Any, handler: H | None = None, *, follows_sizes: bool = False) -> Any:
    """Follow calls of `target` (a function, or a tensor method's name) with `handler(prop, node)`.

    A plain Python function is only seen if the tracer keeps it as one call: decorate it with
    `torch.fx.wrap`. Usable as a decorator.
    """
    if not (isinstance(target, str) and target or callable(target)):
        raise TypeError(f"register_function_handler needs a function or a method name, got {target!r}")

    def register(fn: H) -> H:
        _check_handler(fn, repr(target))
        _FUNCTION_HANDLERS[target] = FunctionEntry(fn, follows_sizes)
        return fn

    return register if handler is None else register(handler)


def register_width_attributes(owner: type | str, widths: Mapping[str, WidthRule]) -> None:
    """Declare int attributes of `owner` (a module class or its "module.Class" path) that size a
    reshape in its forward, each with the rule that gives its value after pruning."""
    if not (isinstance(owner, str) or isinstance(owner, type) and issubclass(owner, nn.Module)):
        raise TypeError(f"width attributes belong to an nn.Module subclass or a 'module.Class' path, got {owner!r}")
    for attr, rule in widths.items():
        if not (isinstance(rule, str) or callable(rule)):
            raise TypeError(f"width attribute '{attr}' needs a parameter name or a function, got {rule!r}")
    WIDTH_ATTRIBUTES[owner] = dict(widths)


def module_handler(module: nn.Module) -> ModuleHandler:
    """The handler of the nearest registered class in `module`'s MRO (nn.Module's at the latest)."""
    for cls in type(module).__mro__:
        handler = _MODULE_HANDLERS.get(cls)
        if handler is not None:
            return handler
    raise LookupError("no fallback handler for nn.Module: slimkit.structured.trace.ops was not imported")


def function_entry(target: Any) -> FunctionEntry | None:
    return _FUNCTION_HANDLERS.get(target)


def leaf_module_types() -> tuple[type, ...]:
    return tuple(_LEAF_TYPES)


def declared_widths(module: nn.Module) -> dict[str, WidthRule]:
    """The WIDTH_ATTRIBUTES entry of `module`'s class (looked up by class, then by its path), for
    the attributes the module has (another version of a library may not)."""
    cls = type(module)
    rules = WIDTH_ATTRIBUTES.get(cls) or WIDTH_ATTRIBUTES.get(f"{cls.__module__}.{cls.__qualname__}", {})
    return {attr: rule for attr, rule in rules.items() if isinstance(getattr(module, attr, None), int)}


def declared_width(module: nn.Module, rule: WidthRule) -> int:
    return module.get_parameter(rule).shape[0] if isinstance(rule, str) else int(rule(module))
