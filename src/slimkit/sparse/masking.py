"""Masked parameters through `torch.nn.utils.parametrize`.

A masked layer's `weight` is computed as `original * mask`, so a pruned weight is exactly zero in
the forward pass and gets exactly zero gradient. The stored `original` is zeroed at pruned
positions whenever masks are applied or enforced, and the optimizer state (momentum, Adam moments)
of those positions is cleared, so neither weight decay nor stale optimizer state can revive a
pruned weight, and a weight that is regrown starts from zero with fresh state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize


class WeightMask(nn.Module):
    """The parametrization: weight -> weight * mask (mask is a bool buffer, saved with the model)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def is_masked(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") and isinstance(
        module.parametrizations.weight[0], WeightMask
    )


def original_weight(module: nn.Module) -> nn.Parameter:
    """The trainable tensor behind `module.weight` (the dense-shaped storage of a masked layer)."""
    return module.parametrizations.weight.original if is_masked(module) else module.weight


def masked_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if is_masked(m)}


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.parametrizations.weight[0].mask for name, m in masked_layers(model).items()}


def _check_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    layers = {}
    for name, mask in masks.items():
        if name not in modules:
            raise ValueError(f"unknown layer '{name}': the model has no such module")
        module = modules[name]
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ValueError(f"layer '{name}' ({type(module).__name__}) has no weight to mask")
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(f"mask for '{name}' has shape {tuple(mask.shape)}, its weight {tuple(weight.shape)}")
        layers[name] = module
    return layers


def zero_optimizer_state(optimizer: torch.optim.Optimizer | None, param: torch.Tensor, where: torch.Tensor) -> None:
    """Clear every per-element optimizer state tensor of `param` (momentum, exp_avg, ...) at `where`."""
    if optimizer is None or param not in optimizer.state:
        return
    for value in optimizer.state[param].values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.masked_fill_(where, 0)


@torch.no_grad()
def apply_masks(
    model: nn.Module, masks: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Mask the named layers' weights (registering the parametrization, or updating its mask).

    Every mask is checked before anything changes, so a bad mask leaves the model untouched.
    Weights that become masked are zeroed; weights that become unmasked (regrown) are zeroed too
    and start with fresh optimizer state.
    """
    layers = _check_masks(model, masks)
    for name, module in layers.items():
        mask = masks[name].to(device=original_weight(module).device, dtype=torch.bool)
        if is_masked(module):
            holder = module.parametrizations.weight[0]
            changed = holder.mask ^ mask
            holder.mask.copy_(mask)
        else:
            changed = ~mask
            parametrize.register_parametrization(module, "weight", WeightMask(mask), unsafe=True)
        original = original_weight(module)
        original.masked_fill_(changed, 0.0)
        zero_optimizer_state(optimizer, original, changed)


@torch.no_grad()
def enforce_masks(model: nn.Module) -> None:
    """Zero the stored weights at pruned positions (call after each optimizer step)."""
    for module in masked_layers(model).values():
        original_weight(module).mul_(module.parametrizations.weight[0].mask)


@torch.no_grad()
def bake_mask(module: nn.Module) -> None:
    """Turn a masked module back into a plain one holding its masked weight.

    Not `parametrize.remove_parametrizations`: that deletes the property from the module's
    class, and a deep copy of a parametrized module shares that class with the original, so
    baking a copy would break the original. Here only this instance changes, and it keeps the
    same Parameter object, so an optimizer holding it stays valid.
    """
    weight = module.parametrizations.weight.original
    weight.copy_(module.weight)
    plain_class = type(module).__bases__[0]
    del module._modules["parametrizations"]
    module.__class__ = plain_class
    module.register_parameter("weight", weight)


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake the masks into plain weights (zeros stay zeros) and drop the parametrizations."""
    for module in masked_layers(model).values():
        if len(module.parametrizations) != 1 or len(module.parametrizations.weight) != 1:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        else:
            bake_mask(module)
    return model


@dataclass
class LayerSparsity:
    name: str
    numel: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.numel if self.numel else 0.0


@dataclass
class SparsityReport:
    layers: list[LayerSparsity]

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def nonzero(self) -> int:
        return sum(layer.nonzero for layer in self.layers)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.numel if self.numel else 0.0

    def __str__(self) -> str:
        width = max([len(layer.name) for layer in self.layers] + [6])
        lines = [f"{'layer'.ljust(width)}  {'weights':>10}  {'nonzero':>10}  sparsity"]
        for layer in self.layers:
            lines.append(f"{layer.name.ljust(width)}  {layer.numel:>10,}  {layer.nonzero:>10,}  {layer.sparsity:8.2%}")
        lines.append(f"{'global'.ljust(width)}  {self.numel:>10,}  {self.nonzero:>10,}  {self.sparsity:8.2%}")
        return "\n".join(lines)


def sparsity_report(model: nn.Module, layers: dict[str, nn.Module] | None = None) -> SparsityReport:
    """Per-layer and global sparsity of the effective weights of `layers` (default: all Conv/Linear)."""
    from slimkit.metrics.params import prunable_layers, weight_counts

    layers = prunable_layers(model) if layers is None else layers
    rows = [LayerSparsity(name, *weight_counts(m)) for name, m in layers.items()]
    return SparsityReport(rows)
