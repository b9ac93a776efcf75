"""Scheme-aware prune-and-grow for dynamic sparse training.

Both halves of a mutation are expressed through the scheme's own `make_mask`, so every scheme's
structure (whole channels, block segments, kernel patterns, N:M groups) holds after every
mutation without scheme-specific code:

- prune: rank active weights by importance (inactive ones rank below all of them) and keep the
  top at the lower density;
- grow: survivors rank highest, weights dropped in this mutation lowest (so they are not
  immediately regrown), inactive weights get random scores; keep the top at the higher density.

Scores stay non-negative because the pattern scheme ranks kernels by squared scores.
  Grown weights start at zero with fresh optimizer state (`apply_masks` does that).
"""

from __future__ import annotations

import torch

from slimkit.sparse.schemes import Scheme


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


def layer_importance(weight: torch.Tensor, grad: torch.Tensor | None, grad_weight: float) -> torch.Tensor:
    """MEST's importance |w| + λ|g|, using the gradient of the active weights only."""
    importance = weight.detach().abs()
    if grad_weight and grad is not None:
        importance = importance + grad_weight * grad.detach().abs()
    return importance
