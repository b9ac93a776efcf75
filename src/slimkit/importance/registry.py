"""One protocol and one registry for importance criteria: how important is each weight.

A criterion is a function ``fn(model, layers, inputs, *, option=default, ...) -> {name: scores}``:

* ``layers`` maps names to the modules whose ``.weight`` is scored; every score tensor has that
  weight's shape, and a **higher score means keep**.
* ``inputs`` (`ScoringInputs`) carries what every data-driven criterion shares: calibration
  batches, loss function, batch count, progress display, random generator, example input shape.
  One object, so callers pass the same inputs to any criterion and criteria take only what they use.
* Criterion-specific settings (OBD's ``estimator``, GraSP's ``temperature`` ...) are keyword-only
  parameters with defaults. They are read from the signature when the criterion is registered and
  checked on every call: a misspelt option is an error naming it, never silently ignored.

`register_criterion` adds a criterion under a name; from then on the name works wherever
slimkit accepts a criterion name (`get_criterion`, `slimkit.methods.PruneOnce(criterion=...)`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Protocol

import torch
from torch import Tensor, nn

Scores = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
TensorRule = Callable[[Tensor, "Tensor | None"], Tensor]


@dataclass(frozen=True)
class ScoringInputs:
    """What data-driven criteria share; each criterion reads only the fields it needs.

    ``batches`` yields ``(inputs, targets)`` or ``(inputs, targets, indices)``; the first
    ``num_batches`` are used. ``loss_fn(outputs, targets)`` defaults to cross-entropy.
    ``progress`` is a display mode of `slimkit.utils.progress`; ``generator`` seeds random
    criteria (the global RNG if None); ``input_shape`` is one example's shape (no batch dim).
    """

    batches: Iterable[Sequence[Tensor]] | None = None
    loss_fn: LossFn | None = None
    num_batches: int = 1
    progress: str = "auto"
    generator: torch.Generator | None = None
    input_shape: tuple[int, ...] | None = None


_INPUT_FIELDS = frozenset(f.name for f in fields(ScoringInputs))


class CriterionFn(Protocol):
    """A criterion's function: (model, layers, inputs) positionally, its own options keyword-only."""

    def __call__(
        self, model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs, /, **options: Any
    ) -> Scores: ...


@dataclass(frozen=True)
class Criterion:
    """A registered criterion: call it as ``criterion(model, layers, inputs, **options)``.

    ``needs`` names the `ScoringInputs` fields that must be set (e.g. ``batches``). ``per_tensor``,
    when the score of a weight depends only on that weight and its gradient, is that rule
    ``(weight, grad) -> scores``; structured channel pruning reduces it per channel.
    """

    name: str
    fn: CriterionFn
    options: Mapping[str, Any]  # accepted option -> default (inspect.Parameter.empty: required)
    needs: frozenset[str] = frozenset()
    per_tensor: TensorRule | None = field(default=None, compare=False)

    def __call__(
        self, model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs | None = None, /, **options: Any
    ) -> Scores:
        inputs = ScoringInputs() if inputs is None else inputs
        if not isinstance(inputs, ScoringInputs):
            raise TypeError(f"criterion '{self.name}': inputs must be a ScoringInputs, got {type(inputs).__name__}")
        self.check_options(options)
        missing = sorted(name for name in self.needs if getattr(inputs, name) is None)
        if missing:
            raise ValueError(f"criterion '{self.name}' needs {' and '.join(missing)} (set them in ScoringInputs)")
        return self.fn(model, layers, inputs, **options)

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse options this criterion does not take, naming them and the accepted ones."""
        accepted = ", ".join(self.options) or "none"
        for name in options:
            if name in self.options:
                continue
            hint = " (a shared input: set it in ScoringInputs)" if name in _INPUT_FIELDS else ""
            raise ValueError(f"criterion '{self.name}' has no option '{name}'{hint}; accepted options: {accepted}")
        required = [name for name, default in self.options.items() if default is inspect.Parameter.empty]
        absent = [name for name in required if name not in options]
        if absent:
            raise ValueError(f"criterion '{self.name}' needs option(s) {', '.join(absent)}")


_REGISTRY: dict[str, Criterion] = {}
CRITERIA: Mapping[str, Criterion] = MappingProxyType(_REGISTRY)  # read-only view; add with register_criterion


def _options_of(name: str, fn: Callable[..., Scores]) -> dict[str, Any]:
    """The keyword-only parameters after (model, layers, inputs), with their defaults."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise TypeError(f"criterion '{name}': cannot read the signature of {fn!r}") from exc
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != 3:
        raise TypeError(
            f"criterion '{name}' must take (model, layers, inputs) positionally, then keyword-only options; "
            f"it takes {len(positional)} positional parameters"
        )
    loose = [p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if loose:
        raise TypeError(
            f"criterion '{name}' takes *args/**kwargs ({', '.join(loose)}): name every option as a keyword-only "
            "parameter so that a misspelt option is an error"
        )
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def register_criterion(
    name: str, fn: CriterionFn | None = None, *, needs: Iterable[str] = (), per_tensor: TensorRule | None = None,
    replace: bool = False,
) -> Criterion | Callable[[CriterionFn], Criterion]:
    """Register `fn` as criterion `name` and return its `Criterion`; without `fn`, a decorator.

    `needs` lists the `ScoringInputs` fields the criterion cannot do without (``"batches"``,
    ``"input_shape"`` ...). Re-registering a name is an error unless `replace`.
    """
    if fn is None:
        return lambda function: register_criterion(name, function, needs=needs, per_tensor=per_tensor, replace=replace)
    if not isinstance(name, str) or not name:
        raise ValueError(f"a criterion name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"criterion '{name}' is already registered (pass replace=True to override it)")
    needs = frozenset((needs,) if isinstance(needs, str) else needs)
    unknown = sorted(needs - _INPUT_FIELDS)
    if unknown:
        fields_list = ", ".join(sorted(_INPUT_FIELDS))
        raise ValueError(f"criterion '{name}': needs {unknown} are not ScoringInputs fields ({fields_list})")
    criterion = Criterion(name, fn, MappingProxyType(_options_of(name, fn)), needs, per_tensor)
    _REGISTRY[name] = criterion
    return criterion


def unregister_criterion(name: str) -> None:
    """Remove criterion `name` from the registry."""
    get_criterion(name)
    del _REGISTRY[name]


def get_criterion(name: str) -> Criterion:
    """The criterion registered as `name`."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown criterion {name!r}; choose one of {', '.join(sorted(_REGISTRY))}") from None
