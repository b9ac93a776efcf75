"""Prune-and-grow on compressed layers, never on dense-shaped tensors.

A unit is what the sparsity scheme keeps or removes together (`Scheme.units`): one weight (CSR,
and masked layers under the unstructured scheme), an aligned row segment or a pattern kernel
(CSR under the block or pattern scheme) or one channel (channel layers). Which units survive
and which grow is the scheme's units view's choice (`UnitView.choose`); this module scores the
kept units and rebuilds a layer with the result:

1. keep the `keep` most important active units (ties: lower position first);
2. grow `total - keep` units drawn uniformly among the inactive ones, never one dropped in
   this very mutation; grown weights start at zero with zero optimizer state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slimkit.compressed.convert import swap_parameter
from slimkit.compressed.layers import CompressedLayer
from slimkit.sparse.units import choose_mutation, kept_count  # noqa: F401 (re-exported)


@torch.no_grad()
def apply_mutation(layer: CompressedLayer, survivors: Tensor, grown: Tensor,
                   optimizer: torch.optim.Optimizer | None = None) -> None:
    """Rebuild `layer` with the surviving unit slots plus zero-valued `grown` units; optimizer
    state follows the survivors and starts at zero for the grown weights."""
    old = layer.values
    units = torch.cat([layer.units()[survivors], grown.to(old.device)])
    order = torch.argsort(units)

    def remap(tensor: Tensor) -> Tensor:
        return layer.regroup(tensor, survivors, grown.numel(), order)

    old.grad = None
    layer.set_units(units[order], remap(old.data), keep_parameter=False)
    swap_parameter(optimizer, old, layer.values, remap)


def mest_importance(weight: Tensor, grad: Tensor | None, grad_weight: float) -> Tensor:
    """MEST's importance |w| + λ|g| per weight, from the gradients of the active weights only
    (for a masked layer its masked weight and the original's gradient; for a compressed one its
    kept values and their gradient, all it has)."""
    importance = weight.detach().abs()
    if grad_weight and grad is not None:
        importance = importance + grad_weight * grad.detach().abs()
    return importance


def importance_of(layer: CompressedLayer, grad_weight: float) -> Tensor:
    """MEST's |w| + λ|g| per kept unit of a compressed layer, averaged over the unit's weights."""
    return layer.unit_means(mest_importance(layer.values, layer.values.grad, grad_weight))
