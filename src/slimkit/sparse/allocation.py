"""How a global density budget is split across layers.

- uniform: every layer gets the same density (optionally the first and last layer dense, the
  rest re-solved so the global density stays exactly on target);
- erk: Erdős–Rényi-Kernel (Evci et al. 2020), density proportional to
  (sum of the weight's dimensions) / (product of its dimensions); layers that would exceed
  their maximum are capped and the rest re-solved, so the global density is exact;
- global: one threshold on scores across all layers (Han et al. 2015's global magnitude ranking).

Every variant honours a scheme's limits: a fixed density (N:M) and a maximum density (patterns).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from slimkit.metrics.params import weight_shape

Allocation = Literal["uniform", "erk", "global"]
ALLOCATIONS = ("uniform", "erk", "global")


def check_sparsity(sparsity: float) -> float:
    """Validate a sparsity (fraction of zeros) and return the density."""
    if not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0 or math.isnan(sparsity):
        raise ValueError(f"sparsity must be in [0, 1) (the fraction of zeros), got {sparsity}")
    return 1.0 - float(sparsity)


def erk_share(shape: tuple[int, ...]) -> float:
    return sum(shape) / math.prod(shape)


def water_fill(
    numels: dict[str, int], shares: dict[str, float], caps: dict[str, float], fixed: dict[str, float], density: float
) -> dict[str, float]:
    """Densities d_l = min(eps * share_l, cap_l) (fixed layers keep theirs) with
    sum(d_l * n_l) = density * sum(n_l). Capped layers are removed and eps re-solved until stable."""
    total = sum(numels.values())
    budget = density * total - sum(fixed[n] * numels[n] for n in fixed)
    free = {n for n in numels if n not in fixed}
    capped: dict[str, float] = {}
    while True:
        rest = free - set(capped)
        remaining = budget - sum(capped[n] * numels[n] for n in capped)
        weight = sum(shares[n] * numels[n] for n in rest)
        if not rest or weight <= 0:
            break
        eps = remaining / weight
        newly = {n for n in rest if eps * shares[n] > caps[n]}
        if not newly:
            break
        capped.update({n: caps[n] for n in newly})
    if remaining < -1e-9 * total or (not rest and remaining > 1e-9 * total):
        raise ValueError(
            f"density {density:.4f} cannot be reached under the layers' limits (fixed or maximum densities)"
        )
    result = dict(fixed) | capped
    result.update({n: eps * shares[n] for n in rest})
    return result


def reachable_density(layers: dict[str, nn.Module], scheme=None, dense_layers: tuple[str, ...] | list[str] = ()) -> float:
    """The highest global density the layers can hold under the scheme's maximum densities (the
    pattern scheme keeps at most 4 of 9 taps), dense layers counted whole: where a schedule
    that shrinks density step by step must start (a denser step cannot be allocated)."""
    shapes = {name: weight_shape(m) for name, m in layers.items()}
    numels = {name: math.prod(shape) for name, shape in shapes.items()}
    total = sum(numels.values())
    if total == 0:
        raise ValueError("the model has no prunable layer")
    kept = sum(
        numels[n] * (1.0 if n in dense_layers or scheme is None else scheme.max_density(shapes[n])) for n in layers
    )
    return min(kept / total, 1.0)


def allocate(
    layers: dict[str, nn.Module],
    sparsity: float,
    allocation: Allocation = "uniform",
    *,
    scheme=None,
    scores: dict[str, torch.Tensor] | None = None,
    dense_layers: tuple[str, ...] | list[str] = (),
) -> dict[str, float]:
    """Per-layer densities whose weighted mean is 1 - sparsity (exactly, before a scheme's rounding)."""
    density = check_sparsity(sparsity)
    if not layers:
        raise ValueError("the model has no prunable layer")
    unknown = [n for n in dense_layers if n not in layers]
    if unknown:
        raise ValueError(f"unknown layer(s) to keep dense: {', '.join(unknown)}")
    shapes = {name: weight_shape(m) for name, m in layers.items()}
    numels = {name: math.prod(shape) for name, shape in shapes.items()}
    caps = {name: (scheme.max_density(shapes[name]) if scheme else 1.0) for name in layers}
    fixed = {name: 1.0 for name in dense_layers}
    if scheme is not None and scheme.fixed_density() is not None:
        return {name: fixed.get(name, scheme.fixed_density()) for name in layers}
    if allocation == "uniform":
        shares = {name: 1.0 for name in layers}
    elif allocation == "erk":
        shares = {name: erk_share(shapes[name]) for name in layers}
    elif allocation == "global":
        if scores is None:
            raise ValueError("global allocation ranks scores across layers: pass scores")
        return _global_densities(numels, scores, caps, fixed, density)
    else:
        raise ValueError(f"unknown allocation '{allocation}'; use one of {', '.join(ALLOCATIONS)}")
    return water_fill(numels, shares, caps, fixed, density)


def _global_densities(numels, scores, caps, fixed, density) -> dict[str, float]:
    """Densities from one global top-k over all free layers' scores, then capped and refilled."""
    free = [n for n in numels if n not in fixed]
    budget = round(density * sum(numels.values()) - sum(fixed[n] * numels[n] for n in fixed))
    flat = torch.cat([scores[n].detach().flatten().double() for n in free])
    budget = min(max(budget, 0), flat.numel())
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.argsort(flat, descending=True, stable=True)[:budget]] = True
    densities, offset = {}, 0
    for name in free:
        densities[name] = max(float(keep[offset : offset + numels[name]].float().mean()), 1.0 / numels[name])
        offset += numels[name]
    over = {n for n in free if densities[n] > caps[n]}
    if over:  # redistribute what capped layers cannot hold, in proportion to their global shares
        return water_fill(numels, densities, caps, fixed, density)
    return dict(fixed) | densities
