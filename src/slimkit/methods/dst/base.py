"""What every dynamic sparse training method shares: a random sparse init, then scheduled
prune-and-grow updates until the schedule stops, then the masks settle exactly at the target.

Subclasses say when and how much mutates (`targets`) and, optionally, how masked layers grow
(`grow_layer`: random by default). The mutation itself is `slimkit.methods.mutation`'s, in
masked and compressed storage alike; growth draws from a generator seeded identically
everywhere, so the same seed gives the same masks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial
from typing import Any

import torch
from torch import nn

from slimkit.compressed import CompressedLayer
from slimkit.methods.base import SparsityMethod, method_generator, rescale_to_fan_in
from slimkit.methods.mutation import grow_random, is_dense, masked_importance, mutate_mask, mutate_units, prune_active
from slimkit.sparse.masking import get_masks


def check_fraction(name: str, value: float) -> None:
    """Raise unless `value` lies strictly between 0 and 1."""
    if not 0.0 < value < 1.0:
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
        check_fraction("update_fraction", update_fraction)
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
    def targets(self, fraction: float) -> tuple[float, float] | None:
        """(train sparsity, prune sparsity) for an update at training `fraction`, or None to stop mutating."""

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
        targets = self.targets(self.training_fraction)
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
        """Compressed mutation moves the scheme's units: single weights, aligned row segments or
        pattern kernels (CSR), or whole channels (channel layers)."""
        if self.scheme.name == "channel":
            return super().compressed_options()
        if self.scheme.units_problem() is None:
            return {"layout": "csr", "scheme": self.scheme}
        raise ValueError(
            f"compressed storage mutates unstructured, channel, block (prune: rows) and pattern sparsity; "
            f"the {self.scheme.name} scheme needs masked storage"
        )

    def _by_units(self, module: nn.Module) -> bool:
        """Compressed layers, and unstructured random growth, mutate kept units (weights, segments,
        pattern kernels or channels) directly; unstructured runs share this code in both storages."""
        return isinstance(module, CompressedLayer) or (self.random_growth and self.scheme.name == "unstructured")

    def _mutate_by_units(self, name: str, module: nn.Module, mask: torch.Tensor | None, keep_density: float,
                         density: float) -> torch.Tensor | None:
        new, moved = mutate_units(self.scheme, module, mask, keep_density, density, self.grad_weight,
                                  self.generator, self.optimizer)
        self.moved_since_log[name] += moved
        return new

    def mutate(self, train_sparsity: float, prune_sparsity: float) -> None:
        """Prune every layer to `prune_sparsity`'s density, then grow back to `train_sparsity`'s."""
        low = self.densities(prune_sparsity)
        high = self.densities(train_sparsity)
        swap_rate = max(prune_sparsity - train_sparsity, 0.0) / (1.0 - train_sparsity)  # for fixed-density schemes
        masks = get_masks(self.model)
        new_masks = {}
        for name, module in self.layers.items():
            mask = masks.get(name)
            if min(low[name], high[name]) >= 1.0 and is_dense(module, mask):
                continue  # a dense layer (dense_layers, or ERK's small layers) has nothing to swap
            if self._by_units(module):
                new = self._mutate_by_units(name, module, mask, low[name], high[name])
            else:
                new, moved = mutate_mask(self.scheme, module, mask, low[name], high[name], self.grad_weight,
                                         swap_rate, partial(self.grow_layer, name))
                self.moved_since_log[name] += moved
            if new is not None:
                new_masks[name] = new
        self.set_masks(new_masks)
        self.updates += 1

    def grow_layer(self, name: str, survivors: torch.Tensor, dropped: torch.Tensor, density: float) -> torch.Tensor:
        """Random growth (MEST, SET): no dense information."""
        return grow_random(self.scheme, survivors, dropped, density, self.generator)

    def _settle(self) -> None:
        """End of mutation: make sure the network sits exactly at the target sparsity."""
        masks = get_masks(self.model)
        target = self.densities(self.sparsity)
        settled = {}
        for name, module in self.layers.items():
            mask = masks.get(name)
            if target[name] >= 1.0 and is_dense(module, mask):
                continue
            if self._by_units(module):
                new = self._mutate_by_units(name, module, mask, target[name], target[name])
            else:
                new = prune_active(self.scheme, mask, masked_importance(module, self.grad_weight), target[name])
            if new is not None:
                settled[name] = new
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
