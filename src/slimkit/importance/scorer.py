"""What the data-driven criteria share: checks, batch taking, and a differentiable copy of the model.

* Scores refer to the *effective* weight, ``module.weight`` as the network uses it: for a weight
  masked through ``torch.nn.utils.parametrize`` that is the masked tensor, not
  ``parametrizations.weight.original``, and gradients are taken with respect to it.
* The data-driven criteria work on a deep copy of the model (`Scorer`), so the caller's
  parameters, buffers (BatchNorm running statistics), ``.grad`` fields, ``requires_grad`` flags
  and train/eval modes are never touched, at the cost of one extra copy of the model in memory.
  Apart from synflow (always eval), the copy keeps the model's modes: in train mode BatchNorm uses
  batch statistics and dropout is active, as when SNIP and GraSP score a freshly initialised
  network; put a trained model in eval mode first if that is what should be measured.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimkit.importance.registry import LossFn, Scores
from slimkit.utils.progress import Progress


def check_layers(model: nn.Module, layers: dict[str, nn.Module]) -> None:
    """Every scored layer must be a submodule of `model` with a weight tensor."""
    if not layers:
        raise ValueError("layers is empty: nothing to score")
    submodules = {id(module) for module in model.modules()}
    for name, layer in layers.items():
        if id(layer) not in submodules:
            raise ValueError(f"layer {name!r} is not a submodule of the model")
        if not isinstance(getattr(layer, "weight", None), Tensor):
            raise ValueError(f"layer {name!r} ({type(layer).__name__}) has no weight tensor to score")


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def check_num_batches(num_batches: int) -> None:
    if not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer, got {num_batches!r}")


def check_batch(batch: object) -> None:
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError("a batch must be (inputs, targets) or (inputs, targets, indices)")


def take_batches(
    batches: Iterable[Sequence[Tensor]], num_batches: int, device: torch.device
) -> list[tuple[Tensor, Tensor]]:
    """The first `num_batches` (inputs, targets) pairs, moved to `device` (indices are dropped)."""
    check_num_batches(num_batches)
    taken = []
    for batch in batches:
        check_batch(batch)
        taken.append((batch[0].to(device), batch[1].to(device)))
        if len(taken) == num_batches:
            break
    if not taken:
        raise ValueError("batches is empty: data-driven criteria need at least one batch")
    return taken


class Scorer:
    """A deep copy of the model to differentiate, and the scored layers inside it.

    Working on a copy keeps the caller's model exactly as it was. In the copy only the parameters
    that the scored weights are computed from require grad, so backward passes build no more than
    the scores need. Gradients are taken w.r.t. the *effective* weights: inside
    ``parametrize.cached()`` a parametrized weight is computed once and that very tensor is the one
    the forward pass uses, so d(loss)/d(that tensor) is the gradient w.r.t. the masked weight, and
    for a plain layer it is simply the weight parameter. (Removing the copy's parametrizations
    instead is not an option: that edits the parametrized class, which the copy shares with the
    caller's model.)
    """

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module], *, dtype: torch.dtype | None = None) -> None:
        check_layers(model, layers)
        memo: dict[int, object] = {}
        self.model = copy.deepcopy(model, memo)  # memo maps id(original object) -> its copy
        if dtype is not None:
            self.model.to(dtype)
        for param in self.model.parameters():
            param.requires_grad_(False)
            param.grad = None
        self.layers = {name: memo[id(layer)] for name, layer in layers.items()}
        for layer in self.layers.values():
            for param in _weight_sources(layer):
                param.requires_grad_(True)
        self.device = model_device(model)

    def batches(self, batches: Iterable[Sequence[Tensor]], num_batches: int) -> list[tuple[Tensor, Tensor]]:
        """The calibration batches, on the model's device."""
        return take_batches(batches, num_batches, self.device)

    def forward(self, inputs: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The output, and the effective weights (in `layers` order) this forward pass computed with."""
        with parametrize.cached():
            weights = [layer.weight for layer in self.layers.values()]
            return self.model(inputs), weights

    def loss(
        self, inputs: Tensor, targets: Tensor, loss_fn: LossFn | None, temperature: float = 1.0
    ) -> tuple[Tensor, list[Tensor]]:
        outputs, weights = self.forward(inputs)
        if temperature != 1.0:
            outputs = outputs / temperature
        return (loss_fn or F.cross_entropy)(outputs, targets), weights

    def mean_gradients(
        self, data: list[tuple[Tensor, Tensor]], loss_fn: LossFn | None, temperature: float = 1.0,
        task: Progress | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """(dL/dw averaged over the batches, the weights w); one `task` step per batch."""
        total: list[Tensor] = []
        for inputs, targets in task.iterate(data) if task is not None else data:
            loss, weights = self.loss(inputs, targets, loss_fn, temperature)
            grads = gradients(loss, weights)
            total = grads if not total else [acc + grad for acc, grad in zip(total, grads)]
        return [acc / len(data) for acc in total], detached(weights)

    def scores(self, values: Iterable[Tensor]) -> Scores:
        return {name: value.detach() for name, value in zip(self.layers, values)}


def _weight_sources(layer: nn.Module) -> list[Tensor]:
    """The leaf parameters a layer's effective weight is computed from."""
    if parametrize.is_parametrized(layer, "weight"):
        return list(layer.parametrizations.weight.parameters())
    return [layer.weight]


def detached(tensors: Iterable[Tensor]) -> list[Tensor]:
    return [tensor.detach() for tensor in tensors]


def gradients(
    output: Tensor, weights: list[Tensor], *, create_graph: bool = False, retain_graph: bool | None = None
) -> list[Tensor]:
    """d output / d weights, with zeros for weights the output does not depend on."""
    if not output.requires_grad:
        return [torch.zeros_like(w) for w in weights]
    return list(
        torch.autograd.grad(
            output, weights, create_graph=create_graph, retain_graph=retain_graph,
            allow_unused=True, materialize_grads=True,
        )
    )


def hessian_vector_product(grads: list[Tensor], weights: list[Tensor], vectors: list[Tensor]) -> list[Tensor]:
    """H v by double backprop (Pearlmutter 1994): d(g . v)/dw, with g built with create_graph=True."""
    dot = sum((g * v).sum() for g, v in zip(grads, vectors))
    return gradients(dot, weights, retain_graph=True)
