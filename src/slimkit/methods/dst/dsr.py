"""Dynamic Sparse Reparameterization (Mostafa & Wang 2019): one global magnitude threshold,
regrowth reallocated across layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimkit.methods.dst.base import DynamicSparseTraining, check_fraction
from slimkit.sparse.masking import get_masks
from slimkit.utils.renamed import take_renamed


def _split_by_share(total: int, shares: dict[str, float], caps: dict[str, int]) -> dict[str, int]:
    """`total` split in proportion to `shares` (largest remainders), no entry above its cap."""
    result = {name: 0 for name in shares}
    remaining, open_names = total, {n for n in shares if caps[n] > 0}
    while remaining > 0 and open_names:
        weight = sum(shares[n] for n in open_names) or float(len(open_names))
        exact = {n: remaining * (shares[n] or 1.0) / weight for n in open_names}
        given = {n: min(int(exact[n]), caps[n] - result[n]) for n in open_names}
        leftover = remaining - sum(given.values())
        for n in sorted(open_names, key=lambda n: exact[n] - int(exact[n]), reverse=True):
            if leftover <= 0:
                break
            if result[n] + given[n] < caps[n]:
                given[n] += 1
                leftover -= 1
        for n, k in given.items():
            result[n] += k
        remaining = total - sum(result.values())
        open_names = {n for n in open_names if result[n] < caps[n]}
        if not any(given.values()):
            break
    return result


class DSR(DynamicSparseTraining):
    """Dynamic Sparse Reparameterization (Mostafa & Wang 2019), unstructured.

    Masked storage only: its global threshold and cross-layer reallocation work on dense masks.

    Every update prunes all active weights whose magnitude is below one global threshold H, then
    regrows the same number at random, reallocated across layers in proportion to each layer's
    remaining nonzero weights, so free parameters move to where they are used. H adapts: doubled
    when fewer than (1 - tolerance) * K weights fell below it, halved when more than
    (1 + tolerance) * K did, with K = `mutation_rate` of the active weights. The global number of
    nonzeros is exact; per-layer densities drift by design.
    """

    compressed_storage = False

    def __init__(
        self, model: nn.Module, *, sparsity: float, mutation_rate: float = 0.2, threshold: float = 1e-3,
        tolerance: float = 0.1, mutation_stop: float = 0.75, **kw: Any,
    ) -> None:
        mutation_stop = take_renamed(kw, "stop", "mutation_stop", mutation_stop, 0.75, "DSR")
        check_fraction("mutation_rate", mutation_rate)
        check_fraction("mutation_stop", mutation_stop)
        if threshold <= 0 or not 0 < tolerance < 1:
            raise ValueError(f"DSR needs threshold > 0 and tolerance in (0, 1), got {threshold}, {tolerance}")
        scheme = kw.get("scheme", "unstructured")
        if getattr(scheme, "name", scheme) != "unstructured":
            raise ValueError("DSR reallocates single weights across layers: use the unstructured scheme")
        super().__init__(model, sparsity=sparsity, grad_weight=0.0, **kw)
        self.mutation_rate, self.threshold, self.tolerance = mutation_rate, threshold, tolerance
        self.mutation_stop = mutation_stop

    def targets(self, fraction: float) -> tuple[float, float] | None:
        return None if fraction >= self.mutation_stop else (self.sparsity, self.sparsity)

    def mutate(self, train_sparsity: float, prune_sparsity: float) -> None:
        masks = get_masks(self.model)
        below = {n: masks[n] & (m.weight.detach().abs() < self.threshold) for n, m in self.layers.items()}
        survivors = {n: masks[n] & ~below[n] for n in self.layers}
        pruned = sum(int(b.sum()) for b in below.values())
        goal = self.mutation_rate * sum(int(m.sum()) for m in masks.values())
        if pruned < (1 - self.tolerance) * goal:
            self.threshold *= 2.0
        elif pruned > (1 + self.tolerance) * goal:
            self.threshold /= 2.0
        shares = {n: float(survivors[n].sum()) for n in self.layers}
        room = {n: survivors[n].numel() - int(survivors[n].sum()) - int(below[n].sum()) for n in self.layers}
        regrow = _split_by_share(pruned, shares, room)
        new_masks = {}
        for name in self.layers:
            free = ~masks[name]  # never regrow a weight pruned in this very update
            count = regrow[name]
            chosen = torch.zeros_like(free)
            if count:
                noise = torch.rand(free.shape, generator=self.generator).to(free.device).masked_fill(~free, -1.0)
                chosen.view(-1)[torch.topk(noise.view(-1), count).indices] = True
            new_masks[name] = survivors[name] | chosen
            self.moved_since_log[name] += count
        self.set_masks(new_masks)
        self.updates += 1

    def _settle(self) -> None:
        self.finished = True  # the global count never left the target

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "threshold": self.threshold}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.threshold = float(state["threshold"])
