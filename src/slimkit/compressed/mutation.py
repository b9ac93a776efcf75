"""Prune-and-grow on kept units, never on dense-shaped tensors.

A unit is what a layer's layout keeps or removes together: one weight (CSR, and masked layers
under the unstructured scheme) or one channel (channel layers). The same two steps serve every
case, so a masked unstructured run and a compressed one with the same seed make the same mutations:

1. keep the `keep` most important active units (ties: lower position first);
2. grow `total - keep` units drawn uniformly among the inactive ones, never one dropped in
   this very mutation; grown weights start at zero with zero optimizer state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slimkit.compressed.convert import swap_parameter
from slimkit.compressed.layers import CompressedLayer
from slimkit.compressed.structure import choose_mutation, kept_count  # noqa: F401 (re-exported)


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


def importance_of(layer: CompressedLayer, grad_weight: float) -> Tensor:
    """MEST's |w| + λ|g| per kept unit of a compressed layer."""
    return layer.unit_importance(grad_weight)
