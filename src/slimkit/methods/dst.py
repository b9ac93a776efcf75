"""Dynamic sparse training: the network is sparse from the first step to the last, and its
connectivity mutates during training (prune the least important weights, grow new ones).

- MEST (Yuan et al., NeurIPS 2021, "MEST: Accurate and Fast Memory-Economic Sparse Training
  Framework on the Edge"): random sparse init; every update, drop the active weights with the
  lowest |w| + λ|g| (gradients of active weights only) and grow as many at random positions,
  new weights starting at zero. No dense information is ever used.
- MEST+EM (Elastic Mutation): the mutation rate decays: at target sparsity s, prune to s+2% and
  regrow to s until 56% of training, then s+1% -> s until 75%, then stop mutating.
- MEST+EM&S (soft memory bound): grow first, train the grown weights, then prune back including
  them: the network trains at s-5% until 56%, s-2.5% until 75%, and each update prunes to s
  before growing again; from 75% on it stays exactly at s.
- SET (Mocanu et al. 2018): magnitude drop, random growth of a fraction zeta of the active
  weights, zeta cosine-decayed (as in the RigL paper's SET baseline).

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

from slimkit.methods.base import SparsityMethod
from slimkit.methods.mutation import drop_least_important, grow_random, layer_importance, prune_active
from slimkit.sparse.masking import apply_masks, get_masks, original_weight


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

    def __init__(
        self,
        model: nn.Module,
        *,
        sparsity: float,
        update_every: int | None = None,
        update_fraction: float = 0.03,
        grad_weight: float = 0.0,
        seed: int = 0,
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
        self.generator = torch.Generator().manual_seed(seed)
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
        self.prune_to(self.initial_sparsity(), scores)

    def update(self) -> None:
        if self.finished:
            return
        targets = self.targets(self.progress)
        if targets is None:
            self._settle()
            return
        if self.steps_done % self.interval == 0:
            self.mutate(*targets)

    def mutate(self, train_sparsity: float, prune_sparsity: float) -> None:
        """Prune every layer to `prune_sparsity`'s density, then grow back to `train_sparsity`'s."""
        low = self.densities(prune_sparsity)
        high = self.densities(train_sparsity)
        swap_rate = max(prune_sparsity - train_sparsity, 0.0) / (1.0 - train_sparsity)  # for fixed-density schemes
        masks = get_masks(self.model)
        new_masks = {}
        for name, module in self.layers.items():
            mask = masks[name]
            weight = original_weight(module)
            importance = layer_importance(module.weight, weight.grad, self.grad_weight)
            if self.scheme.fixed_density() is not None:
                survivors = drop_least_important(mask, importance, round(swap_rate * float(mask.sum())))
            else:
                survivors = prune_active(self.scheme, mask, importance, min(low[name], high[name]))
            grown = grow_random(self.scheme, survivors, mask & ~survivors, high[name], self.generator)
            new_masks[name] = grown
            self.moved_since_log[name] += int((grown & ~mask).sum())
        apply_masks(self.model, new_masks, self.optimizer)
        self.updates += 1

    def _settle(self) -> None:
        """End of mutation: make sure the network sits exactly at the target sparsity."""
        masks = get_masks(self.model)
        target = self.densities(self.sparsity)
        settled = {}
        for name, module in self.layers.items():
            importance = layer_importance(module.weight, original_weight(module).grad, self.grad_weight)
            settled[name] = prune_active(self.scheme, masks[name], importance, target[name])
        apply_masks(self.model, settled, self.optimizer)
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
    """MEST+EM's ResNet-32 recipe as fractions of training: s+2% -> s, then s+1% -> s."""
    return [
        Phase(0.56, sparsity, min(sparsity + 0.02, 1 - 1e-6)),
        Phase(0.75, sparsity, min(sparsity + 0.01, 1 - 1e-6)),
    ]


def soft_memory_bound_phases(sparsity: float) -> list[Phase]:
    """MEST+EM&S: train at s-5%, then s-2.5%, pruning back to s at every update."""
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
