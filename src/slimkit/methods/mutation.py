"""The one prune-and-grow engine of dynamic sparse training, for every storage and scheme.

Both strategies take the scheme's structure from the scheme itself:

- by units (`mutate_units`): compressed layers, and masked layers under unstructured random
  growth, keep their most important units and grow random absent ones through the scheme's units
  view (`Scheme.units`, `slimkit.sparse.units`), never building a dense-sized tensor;
- by masks (`mutate_mask`): other masked layers express both halves through the scheme's own
  `make_mask`, so every structure (whole channels, block segments, kernel patterns, N:M groups)
  holds after every mutation:
  - prune: rank active weights by importance (inactive ones rank below all of them) and keep the
    top at the lower density;
  - grow: survivors rank highest, weights dropped in this mutation lowest (so they are not
    immediately regrown), inactive weights get random (or gradient) scores; keep the top at the
    higher density. Scores stay non-negative because the pattern scheme ranks kernels by
    squared scores.

Importance is MEST's |w| + λ|g| (`slimkit.compressed.mutation.mest_importance`) in both.
Grown weights start at zero with fresh optimizer state.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from slimkit.compressed import apply_mutation, importance_of
from slimkit.compressed.mutation import mest_importance
from slimkit.sparse.masking import original_weight
from slimkit.sparse.schemes import Scheme

#: growth of a masked layer: (survivors, dropped, density) -> new mask
Grow = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def drop_least_important(mask: torch.Tensor, importance: torch.Tensor, count: int) -> torch.Tensor:
    """`mask` without its `count` least important active weights (for fixed-density schemes such as
    N:M, where growth then refills exactly the groups that lost a weight)."""
    if count <= 0:
        return mask.clone()
    ranked = torch.where(mask, importance, torch.full_like(importance, float("inf"))).flatten()
    kept = mask.flatten().clone()
    kept[torch.argsort(ranked, stable=True)[:count]] = False
    return kept.view_as(mask)


def prune_active(scheme: Scheme, mask: torch.Tensor, importance: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the most important active units of `mask` at `density` (never adds a weight)."""
    if scheme.fixed_density() is not None:
        return mask.clone()  # the density cannot change; mutation swaps weights within groups instead
    scores = torch.where(mask, importance + 1.0, torch.zeros_like(importance))
    return scheme.make_mask(scores, density) & mask


def grow(
    scheme: Scheme, mask: torch.Tensor, dropped: torch.Tensor, density: float, priority: torch.Tensor
) -> torch.Tensor:
    """Add inactive units to `mask` until `density`, highest `priority` (in [0, 1]) first;
    weights in `dropped` come last."""
    scores = torch.where(mask, torch.full_like(priority, 3.0), 0.05 + 0.95 * priority)
    scores = torch.where(dropped, torch.zeros_like(priority), scores)
    return scheme.make_mask(scores, density if scheme.fixed_density() is None else None)


def grow_random(
    scheme: Scheme, mask: torch.Tensor, dropped: torch.Tensor, density: float, generator: torch.Generator
) -> torch.Tensor:
    """MEST/SET growth: random inactive units (no dense information)."""
    return grow(scheme, mask, dropped, density, torch.rand(mask.shape, generator=generator).to(mask.device))


def grow_by_gradient(
    scheme: Scheme, mask: torch.Tensor, dropped: torch.Tensor, density: float, dense_grad: torch.Tensor
) -> torch.Tensor:
    """RigL growth: inactive units with the largest |dense gradient|."""
    magnitude = dense_grad.detach().abs()
    return grow(scheme, mask, dropped, density, magnitude / magnitude.max().clamp_min(1e-30))


def is_dense(module: nn.Module, mask: torch.Tensor | None) -> bool:
    """Whether a layer keeps every weight (a dense layer has nothing to swap); `mask` is None for
    a compressed layer."""
    return bool(mask.all()) if mask is not None else module.nnz == module.weight_numel


def masked_importance(module: nn.Module, grad_weight: float) -> torch.Tensor:
    """|w| + λ|g| of a masked layer's weight, with the gradients of its active weights."""
    return mest_importance(module.weight, original_weight(module).grad, grad_weight)


def mutate_units(
    scheme: Scheme, module: nn.Module, mask: torch.Tensor | None, keep_density: float, density: float,
    grad_weight: float, generator: torch.Generator, optimizer: torch.optim.Optimizer | None = None,
) -> tuple[torch.Tensor | None, int]:
    """Keep the most important units at `keep_density`, grow random absent ones up to `density`.

    A compressed layer (`mask` None) mutates through its own units view and is rebuilt in place
    (gives None); a masked one through the scheme's and gets its new mask. Also returns how many
    weights grew.
    """
    if mask is None:
        view, ids = module.unit_view, module.units()
        importance = importance_of(module, grad_weight)
    else:
        view = scheme.units(tuple(mask.shape))
        ids = view.ids(torch.nonzero(mask.flatten()).flatten())
        per_weight = masked_importance(module, grad_weight).flatten()[view.positions(ids)]
        importance = view.unit_rows(per_weight).mean(1)
    keep, total = view.kept(min(keep_density, density)), view.kept(density)
    survivors, grown = view.choose(ids, importance, keep, total, generator)
    moved = grown.numel() * view.size
    if mask is None:
        apply_mutation(module, survivors, grown, optimizer)
        return None, moved
    new = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
    new[view.positions(ids[survivors])] = True
    new[view.positions(grown).to(mask.device)] = True
    return new.view_as(mask), moved


def mutate_mask(
    scheme: Scheme, module: nn.Module, mask: torch.Tensor, keep_density: float, density: float,
    grad_weight: float, swap_rate: float, grow_layer: Grow,
) -> tuple[torch.Tensor, int]:
    """Prune `mask` to `keep_density` (fixed-density schemes: drop `swap_rate` of the active
    weights instead), then grow back to `density` with `grow_layer`. Returns the new mask and
    how many weights grew."""
    importance = masked_importance(module, grad_weight)
    if scheme.fixed_density() is not None:
        survivors = drop_least_important(mask, importance, round(swap_rate * float(mask.sum())))
    else:
        survivors = prune_active(scheme, mask, importance, min(keep_density, density))
    new = grow_layer(survivors, mask & ~survivors, density)
    return new, int((new & ~mask).sum())
