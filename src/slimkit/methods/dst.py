"""Dynamic sparse training: the network is sparse from the first step to the last, and its
connectivity mutates during training (prune the least important weights, grow new ones).

- MEST (Yuan et al., NeurIPS 2021, "MEST: Accurate and Fast Memory-Economic Sparse Training
  Framework on the Edge"): random sparse init; every update, drop the active weights with the
  lowest |w| + λ|g| (gradients of active weights only) and grow as many at random positions,
  new weights starting at zero. No dense information is ever used.
- MEST+EM (Elastic Mutation): the mutation rate decays: at target sparsity s (density d = 1 - s),
  prune to s + 0.2d and regrow to s until 56% of training, then s + 0.1d -> s until 75%, then stop
  mutating (at s = 90%: 92% then 91%, the paper's ResNet-32 recipe).
- MEST+EM&S (soft memory bound): grow first, train the grown weights, then prune back including
  them: the network trains at s-5% until 56%, s-2.5% until 75%, and each update prunes to s
  before growing again; from 75% on it stays exactly at s.
- SET (Mocanu et al. 2018): magnitude drop, random growth of a fraction zeta of the active
  weights, zeta cosine-decayed (as in the RigL paper's SET baseline).
- RigL (Evci et al. 2020): magnitude drop, growth where the dense gradient is largest, a fraction
  alpha = 0.3 cosine-decayed, every 100 steps until 75% of training. The only method here that
  computes a dense gradient, and only on update steps.

All variants respect the sparsity scheme (see `slimkit.methods.mutation`) and draw growth from a
generator seeded identically everywhere, so the same seed gives the same masks.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimkit.compressed import CompressedLayer, apply_mutation, choose_mutation, importance_of, kept_count
from slimkit.compressed.units import PatternUnits, SegmentUnits
from slimkit.methods.base import SparsityMethod, method_generator, rescale_to_fan_in
from slimkit.methods.mutation import (
    drop_least_important, grow_by_gradient, grow_random, layer_importance, prune_active,
)
from slimkit.sparse.masking import get_masks, masked_layers, original_weight
from slimkit.utils import distributed


@dataclass(frozen=True)
class Phase:
    """Until `end` (fraction of training) train at `train_sparsity`; each update prunes to
    `prune_sparsity` and grows back to `train_sparsity`."""

    end: float
    train_sparsity: float
    prune_sparsity: float


def _check_fraction(name: str, value: float, *, low_open: bool = True) -> None:
    if not (0.0 < value < 1.0 if low_open else 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {value}")


class DynamicSparseTraining(SparsityMethod, ABC):
    """Base class: random sparse init, then scheduled prune-and-grow updates."""

    #: random growth needs no dense information, so it also runs on compressed layers
    random_growth = True
    compressed_storage = True

    def __init__(
        self,
        model: nn.Module,
        *,
        sparsity: float,
        update_every: int | None = None,
        update_fraction: float = 0.03,
        grad_weight: float = 0.0,
        seed: int = 0,
        rescale_init: bool = True,
        **kwargs: Any,
    ) -> None:
        if update_every is not None and update_every < 1:
            raise ValueError(f"update interval must be >= 1 step, got {update_every}")
        _check_fraction("update_fraction", update_fraction)
        if grad_weight < 0:
            raise ValueError(f"grad_weight (lambda) must be >= 0, got {grad_weight}")
        if kwargs.get("allocation") == "global":
            raise ValueError("dynamic sparse training keeps per-layer budgets: use uniform or erk allocation")
        super().__init__(model, sparsity=sparsity, **kwargs)
        self.update_every, self.update_fraction, self.grad_weight = update_every, update_fraction, grad_weight
        self.rescale_init = rescale_init
        self.generator = method_generator(seed, "mutation")
        self.finished = False
        self.moved_since_log: dict[str, int] = {name: 0 for name in self.layers}
        self.updates = 0

    # ---- schedule ----------------------------------------------------------------------------
    @abstractmethod
    def targets(self, progress: float) -> tuple[float, float] | None:
        """(train sparsity, prune sparsity) for an update at `progress`, or None to stop mutating."""

    def initial_sparsity(self) -> float:
        first = self.targets(0.0)
        return first[0] if first else self.sparsity

    @property
    def interval(self) -> int:
        if self.update_every is not None:
            return self.update_every
        return max(1, round(self.update_fraction * (self.total_steps or 0)))

    # ---- the step contract -----------------------------------------------------------------
    def initialize(self) -> None:
        if self.total_steps is None:
            raise ValueError("dynamic sparse training needs the run length: bind(optimizer, total_steps=...)")
        scores = {n: torch.rand(m.weight.shape, generator=self.generator) for n, m in self.layers.items()}
        masks = self.prune_to(self.initial_sparsity(), scores)
        if self.rescale_init:
            rescale_to_fan_in(self.layers, masks)

    def update(self) -> None:
        if self.finished:
            return
        targets = self.targets(self.progress)
        if targets is None:
            self._settle()
            return
        if self.steps_done % self.interval == 0:
            self.mutate(*targets)

    def use_compressed_storage(self, layers=None) -> list[str]:
        if not self.random_growth:
            raise ValueError(f"{type(self).__name__} grows by dense information: use masked storage")
        return super().use_compressed_storage(layers)

    def compressed_options(self) -> dict[str, Any]:
        """Compressed mutation moves single weights, aligned row segments or pattern kernels
        (CSR), or whole channels (channel layers)."""
        if self.scheme.name in ("unstructured", "channel"):
            return super().compressed_options()
        if self.scheme.name == "block" and self.scheme.prune == "rows":
            return {"layout": "csr", "unit_rule": SegmentUnits(self.scheme.block[1])}
        if self.scheme.name == "pattern":
            return {"layout": "csr", "unit_rule": PatternUnits(self.scheme.patterns)}
        raise ValueError(
            f"compressed storage mutates unstructured, channel, block (prune: rows) and pattern sparsity; "
            f"the {self.scheme.name} scheme needs masked storage"
        )

    def _by_units(self, module: nn.Module) -> bool:
        """Compressed layers, and unstructured random growth, mutate kept units (weights, segments,
        pattern kernels or channels) directly; unstructured runs share this code in both storages."""
        return isinstance(module, CompressedLayer) or (self.random_growth and self.scheme.name == "unstructured")

    def _mutate_positions(self, name: str, module: nn.Module, mask: torch.Tensor | None, keep_density: float,
                          density: float) -> torch.Tensor | None:
        """Keep the most important units at `keep_density`, grow at random up to `density`.
        A compressed layer is rebuilt in place (returns None); a masked one gets its new mask."""
        if mask is None:
            importance = importance_of(module, self.grad_weight)
            keep, total = module.kept_units(min(keep_density, density)), module.kept_units(density)
            survivors, grown = module.choose_units(importance, keep, total, self.generator)
        else:
            positions, numel = torch.nonzero(mask.flatten()).flatten(), mask.numel()
            full = layer_importance(module.weight, original_weight(module).grad, self.grad_weight)
            importance = full.flatten()[positions]
            keep, total = kept_count(min(keep_density, density), numel), kept_count(density, numel)
            survivors, grown = choose_mutation(positions, importance, keep, total, numel, self.generator)
        self.moved_since_log[name] += grown.numel() * (1 if mask is not None else module.unit_size)
        if mask is None:
            apply_mutation(module, survivors, grown, self.optimizer)
            return None
        new = torch.zeros(numel, dtype=torch.bool, device=mask.device)
        new[positions[survivors]] = True
        new[grown.to(mask.device)] = True
        return new.view_as(mask)

    def mutate(self, train_sparsity: float, prune_sparsity: float) -> None:
        """Prune every layer to `prune_sparsity`'s density, then grow back to `train_sparsity`'s."""
        low = self.densities(prune_sparsity)
        high = self.densities(train_sparsity)
        swap_rate = max(prune_sparsity - train_sparsity, 0.0) / (1.0 - train_sparsity)  # for fixed-density schemes
        masks = get_masks(self.model)
        new_masks = {}
        for name, module in self.layers.items():
            if min(low[name], high[name]) >= 1.0 and self._is_full(module, masks.get(name)):
                continue  # a dense layer (dense_layers, or ERK's small layers) has nothing to swap
            if self._by_units(module):
                new = self._mutate_positions(name, module, masks.get(name), low[name], high[name])
                if new is not None:
                    new_masks[name] = new
                continue
            mask = masks[name]
            weight = original_weight(module)
            importance = layer_importance(module.weight, weight.grad, self.grad_weight)
            if self.scheme.fixed_density() is not None:
                survivors = drop_least_important(mask, importance, round(swap_rate * float(mask.sum())))
            else:
                survivors = prune_active(self.scheme, mask, importance, min(low[name], high[name]))
            grown = self.grow_layer(name, survivors, mask & ~survivors, high[name])
            new_masks[name] = grown
            self.moved_since_log[name] += int((grown & ~mask).sum())
        self.set_masks(new_masks)
        self.updates += 1

    @staticmethod
    def _is_full(module: nn.Module, mask: torch.Tensor | None) -> bool:
        return bool(mask.all()) if mask is not None else module.nnz == module.weight_numel

    def grow_layer(self, name: str, survivors: torch.Tensor, dropped: torch.Tensor, density: float) -> torch.Tensor:
        """Random growth (MEST, SET): no dense information."""
        return grow_random(self.scheme, survivors, dropped, density, self.generator)

    def _settle(self) -> None:
        """End of mutation: make sure the network sits exactly at the target sparsity."""
        masks = get_masks(self.model)
        target = self.densities(self.sparsity)
        settled = {}
        for name, module in self.layers.items():
            if target[name] >= 1.0 and self._is_full(module, masks.get(name)):
                continue
            if self._by_units(module):
                new = self._mutate_positions(name, module, masks.get(name), target[name], target[name])
                if new is not None:
                    settled[name] = new
                continue
            importance = layer_importance(module.weight, original_weight(module).grad, self.grad_weight)
            settled[name] = prune_active(self.scheme, masks[name], importance, target[name])
        self.set_masks(settled)
        self.finished = True

    def on_epoch_end(self, trainer, epoch: int, row: dict[str, Any]) -> None:
        super().on_epoch_end(trainer, epoch, row)
        row["mask_updates"] = self.updates
        row["weights_moved"] = sum(self.moved_since_log.values())
        for name, moved in self.moved_since_log.items():
            row[f"moved/{name}"] = moved
        self.moved_since_log = {name: 0 for name in self.layers}

    # ---- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(), "generator": self.generator.get_state(), "finished": self.finished,
            "updates": self.updates, "moved": dict(self.moved_since_log),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.finished, self.updates = bool(state["finished"]), int(state["updates"])
        self.moved_since_log = dict(state["moved"])


class MEST(DynamicSparseTraining):
    """Vanilla MEST: a constant mutation rate (fraction of active weights) until `stop`."""

    def __init__(self, model: nn.Module, *, sparsity: float, mutation_rate: float = 0.2, stop: float = 0.75, **kw):
        _check_fraction("mutation rate", mutation_rate)
        _check_fraction("stop", stop)
        super().__init__(model, sparsity=sparsity, **kw)
        self.mutation_rate, self.stop = mutation_rate, stop

    def targets(self, progress: float) -> tuple[float, float] | None:
        if progress >= self.stop:
            return None
        return self.sparsity, self.sparsity + self.mutation_rate * (1.0 - self.sparsity)


class PhasedMEST(DynamicSparseTraining):
    """MEST with a phase schedule (Elastic Mutation, soft memory bound)."""

    def __init__(self, model: nn.Module, *, sparsity: float, phases: list[Phase], **kw):
        if not phases:
            raise ValueError("a phase schedule needs at least one phase")
        ends = [p.end for p in phases]
        if ends != sorted(ends) or ends[0] <= 0 or ends[-1] > 1 or len(set(ends)) != len(ends):
            raise ValueError(f"the schedule ends before it starts: phase ends must increase within (0, 1], got {ends}")
        for p in phases:
            for value in (p.train_sparsity, p.prune_sparsity):
                if not 0.0 <= value < 1.0:
                    raise ValueError(f"phase sparsities must be in [0, 1), got {p}")
        super().__init__(model, sparsity=sparsity, **kw)
        self.phases = phases

    def targets(self, progress: float) -> tuple[float, float] | None:
        for phase in self.phases:
            if progress < phase.end:
                return phase.train_sparsity, phase.prune_sparsity
        return None


def elastic_mutation_phases(sparsity: float) -> list[Phase]:
    """MEST+EM's ResNet-32 recipe as fractions of training, scaled to the density d = 1 - s:
    prune to s + 0.2d then s + 0.1d, regrowing to s (at s = 90%: 92% then 91%, the paper's numbers).

    The paper states the schedule in absolute points for s = 90%; taken literally at s = 98%,
    "s + 2%" would prune every active weight and leave each layer with zero-initialised regrowth
    only, a dead network. Scaling by d keeps the same fraction of active weights mutating.
    """
    density = 1.0 - sparsity
    return [Phase(0.56, sparsity, sparsity + 0.2 * density), Phase(0.75, sparsity, sparsity + 0.1 * density)]


def soft_memory_bound_phases(sparsity: float) -> list[Phase]:
    """MEST+EM&S: train at s-5%, then s-2.5%, pruning back to s at every update. Unlike EM's,
    these absolute points stay meaningful at any sparsity (they only loosen the memory bound)."""
    return [Phase(0.56, max(sparsity - 0.05, 0.0), sparsity), Phase(0.75, max(sparsity - 0.025, 0.0), sparsity)]


class SET(DynamicSparseTraining):
    """SET: drop the smallest magnitudes, grow at random; zeta * (1 + cos(pi t)) / 2 of the active
    weights mutate at progress t, until `stop`."""

    def __init__(self, model: nn.Module, *, sparsity: float, zeta: float = 0.3, stop: float = 0.75, **kw):
        _check_fraction("zeta (mutation rate)", zeta)
        _check_fraction("stop", stop)
        super().__init__(model, sparsity=sparsity, grad_weight=0.0, **kw)
        self.zeta, self.stop = zeta, stop

    def targets(self, progress: float) -> tuple[float, float] | None:
        if progress >= self.stop:
            return None
        rate = self.zeta * 0.5 * (1.0 + math.cos(math.pi * progress / self.stop))
        return self.sparsity, self.sparsity + rate * (1.0 - self.sparsity)


class RigL(DynamicSparseTraining):
    """RigL: drop the smallest magnitudes, grow where |dense gradient| is largest.

    On update steps only, one extra forward/backward pass of the step's batch runs with every
    mask opened: pruned weights are stored as exact zeros, so the network computes the same
    function and the gradient is the true dense gradient of the loss. Extra memory on those
    steps: one dense-shaped gradient per pruned layer (the size of its weight), freed after
    the update. In your own loop, call `observe(inputs, targets)` before `step()`.
    """

    def __init__(
        self, model: nn.Module, *, sparsity: float, alpha: float = 0.3, stop: float = 0.75,
        update_every: int | None = 100, loss_fn: nn.Module | None = None, **kw: Any,
    ) -> None:
        _check_fraction("alpha (mutation rate)", alpha)
        _check_fraction("stop", stop)
        super().__init__(model, sparsity=sparsity, grad_weight=0.0, update_every=update_every, **kw)
        self.random_growth = False
        self.alpha, self.stop = alpha, stop
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._dense_grads: dict[str, torch.Tensor] = {}

    def targets(self, progress: float) -> tuple[float, float] | None:
        if progress >= self.stop:
            return None
        rate = self.alpha * 0.5 * (1.0 + math.cos(math.pi * progress / self.stop))
        return self.sparsity, self.sparsity + rate * (1.0 - self.sparsity)

    def observe(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self._batch = (inputs, targets)

    def on_step_end(self, trainer, step) -> None:
        self.observe(step.inputs, step.targets)
        super().on_step_end(trainer, step)

    def mutate(self, train_sparsity: float, prune_sparsity: float) -> None:
        if self._batch is None:
            raise ValueError("RigL grows by the dense gradient: call observe(inputs, targets) before step()")
        self._dense_grads = self._dense_gradients(*self._batch)
        try:
            super().mutate(train_sparsity, prune_sparsity)
        finally:
            self._dense_grads = {}

    @staticmethod
    def _is_full(module: nn.Module, mask: torch.Tensor | None) -> bool:
        return bool(mask.all()) if mask is not None else module.nnz == module.weight_numel

    def grow_layer(self, name: str, survivors: torch.Tensor, dropped: torch.Tensor, density: float) -> torch.Tensor:
        return grow_by_gradient(self.scheme, survivors, dropped, density, self._dense_grads[name])

    def _dense_gradients(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """d loss / d weight at every position, pruned ones included; leaves no trace (buffers
        such as BatchNorm statistics and masks, and the weights' .grad, are restored)."""
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}
        originals = {name: original_weight(self.layers[name]) for name in self.layers}
        kept_grads = {name: w.grad for name, w in originals.items()}
        try:
            for module in masked_layers(self.model).values():
                module.parametrizations.weight[0].mask.fill_(True)
            loss = self.loss_fn(self.model(inputs), targets)
            grads = torch.autograd.grad(loss, list(originals.values()), allow_unused=True, materialize_grads=True)
            for grad in grads:  # every rank saw a slice of the global batch: average the slices
                distributed.all_reduce_mean_(grad)
        finally:
            with torch.no_grad():
                for name, buffer in self.model.named_buffers():
                    buffer.copy_(buffers[name])
            for name, w in originals.items():
                w.grad = kept_grads[name]
        return dict(zip(originals, grads))


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

    def __init__(
        self, model: nn.Module, *, sparsity: float, mutation_rate: float = 0.2, threshold: float = 1e-3,
        tolerance: float = 0.1, stop: float = 0.75, **kw: Any,
    ) -> None:
        _check_fraction("mutation rate", mutation_rate)
        _check_fraction("stop", stop)
        if threshold <= 0 or not 0 < tolerance < 1:
            raise ValueError(f"DSR needs threshold > 0 and tolerance in (0, 1), got {threshold}, {tolerance}")
        scheme = kw.get("scheme", "unstructured")
        if getattr(scheme, "name", scheme) != "unstructured":
            raise ValueError("DSR reallocates single weights across layers: use the unstructured scheme")
        super().__init__(model, sparsity=sparsity, grad_weight=0.0, **kw)
        self.compressed_storage = False
        self.mutation_rate, self.threshold, self.tolerance, self.stop = mutation_rate, threshold, tolerance, stop

    def targets(self, progress: float) -> tuple[float, float] | None:
        return None if progress >= self.stop else (self.sparsity, self.sparsity)

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
