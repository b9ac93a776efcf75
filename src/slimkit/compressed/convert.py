"""Switch layers between masked-dense and compressed storage, with identical outputs.

`compress` replaces masked (or plain) Linear / Conv2d layers by compressed ones holding the same
kept weights; `decompress` goes back (masked again by default, so training can go on in masked
storage). Given the optimizer, both move its per-weight state (momentum, Adam moments) along,
so the switch can happen mid-training.
"""

from __future__ import annotations

import logging
from typing import Iterable

import torch
from torch import nn

from slimkit.compressed.layers import CompressedConv2d, CompressedLayer, CompressedLinear
from slimkit.sparse.masking import apply_masks, is_masked, original_weight

log = logging.getLogger("slimkit")


def can_compress(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or CompressedConv2d.supports(module)


def compressed_layers(model: nn.Module) -> dict[str, CompressedLayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, CompressedLayer)}


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def swap_parameter(optimizer: torch.optim.Optimizer | None, old: torch.Tensor, new: nn.Parameter, convert) -> None:
    """Put `new` where `old` was in the optimizer; state tensors shaped like `old` go through `convert`."""
    if optimizer is None:
        return
    for group in optimizer.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    if old in optimizer.state:
        state = optimizer.state.pop(old)
        optimizer.state[new] = {
            key: convert(value) if isinstance(value, torch.Tensor) and value.shape == old.shape else value
            for key, value in state.items()
        }


@torch.no_grad()
def compress(
    model: nn.Module, layers: Iterable[str] | None = None, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, CompressedLayer]:
    """Compress the named layers (default: every masked layer that can be); returns the new modules.

    A masked layer keeps exactly its mask's positions, zeros included (a weight regrown at zero is
    still part of the network); a plain layer keeps its nonzero weights.
    """
    modules = dict(model.named_modules())
    if layers is None:
        names = [n for n, m in modules.items() if is_masked(m) and can_compress(m)]
        skipped = [n for n, m in modules.items() if is_masked(m) and not can_compress(m)]
        if skipped:
            log.info(f"kept in masked storage (no compressed form): {', '.join(skipped)}")
    else:
        names = list(layers)
    for name in names:  # check everything first: nothing half-converted
        if name not in modules:
            raise ValueError(f"unknown layer '{name}'")
        if not can_compress(modules[name]):
            raise ValueError(
                f"layer '{name}' ({type(modules[name]).__name__}) has no compressed form: "
                "Linear and Conv2d with groups=1 are supported"
            )
        mask = modules[name].parametrizations.weight[0].mask if is_masked(modules[name]) else modules[name].weight != 0
        if not bool(mask.any()):
            raise ValueError(f"layer '{name}' has no kept weight: a compressed layer needs at least one")
    result = {}
    for name in names:
        module = modules[name]
        if is_masked(module):
            mask = module.parametrizations.weight[0].mask.clone()
            old = original_weight(module)
        else:
            mask, old = module.weight != 0, module.weight
        weight = module.weight.detach()
        new = (CompressedLinear.from_linear if isinstance(module, nn.Linear) else CompressedConv2d.from_conv)(
            module, weight, mask
        )
        new.train(module.training)
        positions = new.linear_indices()
        swap_parameter(optimizer, old, new.values, lambda state: state.flatten()[positions].clone())
        _set_module(model, name, new)
        result[name] = new
    return result


@torch.no_grad()
def decompress(
    model: nn.Module, layers: Iterable[str] | None = None, optimizer: torch.optim.Optimizer | None = None,
    *, keep_masks: bool = True,
) -> dict[str, nn.Module]:
    """Turn compressed layers back into nn.Linear / nn.Conv2d (masked by their structure unless
    `keep_masks=False`, which gives plain layers with exact zeros)."""
    found = compressed_layers(model)
    names = list(found) if layers is None else list(layers)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"not compressed layer(s): {', '.join(unknown)}")
    result = {}
    for name in names:
        layer = found[name]
        if isinstance(layer, CompressedLinear):
            dense = nn.Linear(layer.in_features, layer.out_features, bias=False)
        else:
            dense = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                              layer.dilation, bias=False)
        dense = dense.to(layer.values.device, layer.values.dtype)
        dense.weight.copy_(layer.dense_weight())
        dense.bias = layer.bias
        dense.train(layer.training)
        positions = layer.linear_indices()
        numel = layer.weight_numel

        def scatter(state: torch.Tensor, positions=positions, shape=layer.weight_shape) -> torch.Tensor:
            full = state.new_zeros(numel)
            full[positions] = state
            return full.view(shape)

        swap_parameter(optimizer, layer.values, dense.weight, scatter)
        _set_module(model, name, dense)
        if keep_masks:
            apply_masks(model, {name: layer.dense_mask()})
        result[name] = dense
    return result


def prepare_for_loading(model: nn.Module, layers: Iterable[str]) -> None:
    """Make the named layers compressed (one kept weight as a placeholder) so that a compressed
    state dict can be loaded into a freshly built model: loading resizes and checks each layer."""
    modules = dict(model.named_modules())
    for name in layers:
        module = modules.get(name)
        if module is None or not can_compress(module):
            raise ValueError(f"cannot hold compressed layer '{name}': the model has no Linear/Conv2d of that name")
        mask = torch.zeros_like(module.weight, dtype=torch.bool)
        mask.view(-1)[0] = True
        maker = CompressedLinear.from_linear if isinstance(module, nn.Linear) else CompressedConv2d.from_conv
        _set_module(model, name, maker(module, module.weight.detach(), mask))
