"""The contract every sparsity method follows.

A method owns the masks of a set of layers. `step()` is called after every optimizer step: it
keeps pruned weights at zero and applies the method's own schedule (prune more, mutate, ...).
Use it as a `Trainer` callback, or in your own loop:

    method = GradualMagnitude(model, sparsity=0.9)
    method.bind(optimizer, total_steps=epochs * len(loader))
    for x, y in loader: loss_fn(model(x), y).backward(); optimizer.step(); optimizer.zero_grad(); method.step()
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable

import torch
from torch import nn

from slimkit.compressed import can_compress, compress
from slimkit.metrics.flops import count_flops
from slimkit.metrics.params import prunable_layers, weight_shape
from slimkit.sparse.allocation import Allocation, allocate, check_sparsity
from slimkit.sparse.masking import apply_masks, enforce_masks, get_masks, is_masked, original_weight, sparsity_report
from slimkit.sparse.schemes import Scheme, make_scheme
from slimkit.utils import distributed
from slimkit.train.callbacks import Callback

log = logging.getLogger("slimkit")


def method_generator(seed: int, purpose: str) -> torch.Generator:
    """A generator for a method's random choices, seeded from `seed` and `purpose`.

    Never `manual_seed(seed)` itself: the model was initialised from the global generator with
    the same seed, so the same stream would make the first layer's "random" scores equal to its
    initial weights, and a random mask would keep exactly the largest positive weights.
    """
    offset = sum((i + 1) * ord(c) for i, c in enumerate(purpose))  # stable across processes, unlike hash()
    return torch.Generator().manual_seed(seed * 1_000_003 + 0x5EED_0000 + offset)


@torch.no_grad()
def rescale_to_fan_in(layers: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
    """Scale each unit's kept initial weights by sqrt(fan-in / kept fan-in).

    A random sparse init keeps the dense init's per-weight variance, so each layer's output
    variance shrinks by its density; without BatchNorm the signal vanishes with depth (LeNet-5
    at 95% did not train at all). Rescaling gives every unit the variance its dense init had
    (Evci et al. 2022, "Gradient Flow in Sparse Neural Networks and How Lottery Tickets Win").
    """
    for name, module in layers.items():
        mask = masks[name]
        rows = mask.reshape(mask.shape[0], -1)
        kept = rows.sum(1, keepdim=True).clamp_min(1).to(torch.float32)
        scale = (rows.shape[1] / kept).sqrt().view(-1, *([1] * (mask.dim() - 1)))
        weight = original_weight(module)
        weight.mul_(scale.to(device=weight.device, dtype=weight.dtype))


def select_layers(
    model: nn.Module, scheme: Scheme, layers: Iterable[str] | None = None
) -> dict[str, nn.Module]:
    """The layers a method prunes. Named layers must all suit the scheme (else ValueError naming
    the layer); by default every Conv/Linear layer the scheme supports, except that channel
    pruning of output units leaves the classifier (the last layer) alone."""
    available = prunable_layers(model)
    if layers is not None:
        modules = dict(model.named_modules())
        chosen = {}
        for name in layers:
            if name not in modules:
                raise ValueError(f"unknown layer '{name}'")
            scheme.check_layer(name, modules[name])
            chosen[name] = modules[name]
        return chosen
    chosen = {name: m for name, m in available.items() if scheme.supports(m)}
    if scheme.name == "channel" and getattr(scheme, "dim", 0) == 0 and len(chosen) > 1:
        # Removing whole output units of the classifier would remove classes: never by default.
        chosen.pop(list(available)[-1], None)
    if not chosen:
        raise ValueError(f"the model has no layer that the {scheme.name} scheme can prune")
    return chosen


class SparsityMethod(Callback):
    """Base class: masks, the scheme, the allocation, and the step counter."""

    #: whether the method's mask changes can run on compressed layers (see `use_compressed_storage`)
    compressed_storage = False

    def __init__(
        self,
        model: nn.Module,
        *,
        sparsity: float,
        scheme: str | Scheme = "unstructured",
        allocation: Allocation = "uniform",
        layers: Iterable[str] | None = None,
        dense_layers: Iterable[str] = (),
        scheme_options: dict[str, Any] | None = None,
    ) -> None:
        check_sparsity(sparsity)
        self.model = model
        self.sparsity = float(sparsity)
        self.scheme = scheme if isinstance(scheme, Scheme) else make_scheme(scheme, **(scheme_options or {}))
        self.allocation = allocation
        self.layers = select_layers(model, self.scheme, layers)
        self.dense_layers = tuple(dense_layers)
        unknown = [n for n in self.dense_layers if n not in self.layers]
        if unknown:
            raise ValueError(f"dense layer(s) {', '.join(unknown)} are not among the pruned layers")
        fixed = self.scheme.fixed_density()
        if fixed is not None and abs((1.0 - self.sparsity) - fixed) > 1e-9:
            raise ValueError(
                f"the {self.scheme.name} scheme fixes sparsity at {1 - fixed:g}; got sparsity {self.sparsity:g}"
            )
        if allocation != "global":  # fail before training on impossible budgets
            densities = allocate(self.layers, self.sparsity, allocation, scheme=self.scheme,
                                 dense_layers=self.dense_layers)
            self._warn_starved_layers(densities)
        self.optimizer: torch.optim.Optimizer | None = None
        self.total_steps: int | None = None
        self.steps_done = 0
        self.initialized = False

    def _warn_starved_layers(self, densities: dict[str, float]) -> None:
        """Warn when a layer keeps fewer weights than it has outputs, so some outputs get no weight
        at all. Uniform allocation does this to small first layers at high sparsity (ResNet-20's
        first conv keeps 3 of 144 weights at 98%), and training then varies wildly between seeds
        (BENCHMARKS.md, dynamic sparse training on resnet20). Channel pruning removes outputs on
        purpose, and fixed-density schemes (N:M) keep every group, so they are not checked."""
        if self.scheme.name == "channel" or self.scheme.fixed_density() is not None:
            return
        for name, module in self.layers.items():
            shape = weight_shape(module)
            kept = round(densities[name] * math.prod(shape))
            if densities[name] < 1.0 and kept < shape[0]:
                log.warning(
                    "layer %s keeps %d of its %d weights, fewer than its %d outputs: some outputs get no "
                    "weight. Keep it dense (dense_layers=[%r], --dense-layers %s) or use allocation='erk' "
                    "(--allocation erk).",
                    name, kept, math.prod(shape), shape[0], name, name,
                )

    # ---- binding to a loop -----------------------------------------------------------------
    def bind(self, optimizer: torch.optim.Optimizer | None, total_steps: int | None = None) -> None:
        self.optimizer, self.total_steps = optimizer, total_steps
        if not self.initialized:
            # Every layer gets its mask now, all-ones where pruning has not started: later mask
            # changes then only edit buffers, which DistributedDataParallel requires.
            unmasked = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in self.layers.items() if not is_masked(m)}
            apply_masks(self.model, unmasked, optimizer)
            self.initialize()
            self.initialized = True

    def set_run_length(self, total_steps: int) -> None:
        """The run takes `total_steps` optimizer steps after all (two-phase training trains its second
        phase on fewer examples): schedules given as fractions of training follow the real length."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps = total_steps

    def use_compressed_storage(self, layers: Iterable[str] | None = None) -> list[str]:
        """Move the named pruned layers to compressed storage: values + indices (or kept channels)
        only, so the weights, their gradients and the optimizer state all shrink with the density.
        By default every layer whose mask fits the layout moves; the others stay masked (logged).
        Call after `bind` (the initial masks are what is kept). Returns the layers moved."""
        if not self.compressed_storage:
            raise ValueError(f"{type(self).__name__} edits dense masks during training: use masked storage")
        if not self.initialized:
            raise ValueError("bind() the method before compressing: compression keeps the initial masks")
        if distributed.is_distributed():
            raise ValueError("compressed storage runs in one process (DDP needs fixed parameter sizes): use masked storage")
        options = self.compressed_options()
        if layers is not None:
            names = list(layers)
            unknown = [n for n in names if n not in self.layers]
            if unknown:
                raise ValueError(f"layer(s) {', '.join(unknown)} are not pruned by this method")
            self.layers.update(compress(self.model, names, self.optimizer, **options))
            return names
        names = []
        for name, module in list(self.layers.items()):
            if not can_compress(module):
                continue
            try:
                self.layers.update(compress(self.model, [name], self.optimizer, **options))
                names.append(name)
            except ValueError as exc:
                log.info(f"{name} stays in masked storage: {exc}")
        return names

    def compressed_options(self) -> dict[str, Any]:
        """How `use_compressed_storage` lays layers out (arguments of `slimkit.compressed.compress`):
        a physically smaller layer for whole channels, CSR for any other mask."""
        return {"layout": f"channel{self.scheme.dim}" if self.scheme.name == "channel" else "csr"}

    def on_train_start(self, trainer) -> None:
        self.trainer = trainer
        self.bind(trainer.optimizer, trainer.config.epochs * len(trainer.loaders.train))

    def on_step_end(self, trainer, step) -> None:
        self.step()

    def on_epoch_end(self, trainer, epoch: int, row: dict[str, Any]) -> None:
        """Log the density and forward FLOPs the masks give now (training FLOPs follow them)."""
        report = sparsity_report(self.model, self.layers)
        row["density"] = report.nonzero / report.numel
        info = getattr(trainer.loaders.train, "info", None)
        if info is not None:
            row["forward_flops"] = count_flops(self.model, info.input_shape).sparse

    def step(self) -> None:
        self.steps_done += 1
        self.update()
        enforce_masks(self.model)

    # ---- what subclasses define --------------------------------------------------------------
    def initialize(self) -> None:
        """Set the first masks (called once, before the first step)."""

    def update(self) -> None:
        """Change masks on this step if the method's schedule says so."""

    # ---- helpers -----------------------------------------------------------------------------
    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Apply new masks; under DDP rank 0's masks are broadcast first, so all ranks agree."""
        for mask in masks.values():
            distributed.broadcast_(mask)
        apply_masks(self.model, masks, self.optimizer)

    def densities(self, sparsity: float, scores: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        return allocate(
            self.layers, sparsity, self.allocation, scheme=self.scheme, scores=scores, dense_layers=self.dense_layers
        )

    def prune_to(self, sparsity: float, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mask every layer to the allocation's density for `sparsity`, keeping the highest scores."""
        densities = self.densities(sparsity, scores)
        self.last_densities = densities
        masks = {}
        for name, module in self.layers.items():
            if densities[name] >= 1.0:
                masks[name] = torch.ones_like(module.weight, dtype=torch.bool)
            else:
                masks[name] = self.scheme.make_mask(scores[name].detach(), densities[name])
        self.set_masks(masks)
        return masks

    @property
    def training_fraction(self) -> float:
        """The fraction of the run's steps done (schedules are written in it)."""
        return self.steps_done / self.total_steps if self.total_steps else 0.0

    # ---- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done, "initialized": self.initialized, "masks": get_masks(self.model)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = int(state["steps_done"])
        self.initialized = bool(state["initialized"])
        if state["masks"]:
            apply_masks(self.model, state["masks"])
