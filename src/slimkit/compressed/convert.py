"""Switch layers between masked-dense and compressed storage, with identical outputs.

`compress` replaces masked (or plain) Linear / Conv2d layers by compressed ones holding the same
kept weights, in one of the layouts: "csr" (any mask) or "channel0" / "channel1" (whole output /
input channels: a physically smaller dense layer); `decompress` goes back (masked again by default, so training can go on in masked
storage). Given the optimizer, both move its per-weight state (momentum, Adam moments) along,
so the switch can happen mid-training.
"""

from __future__ import annotations

import logging
from typing import Iterable

import torch
from torch import nn

from slimkit.compressed.channels import ChannelConv2d, ChannelLinear
from slimkit.compressed.layers import CompressedConv2d, CompressedLayer, CompressedLinear
from slimkit.sparse.masking import apply_masks, is_masked, original_weight
from slimkit.sparse.schemes import Scheme

log = logging.getLogger("slimkit")

LAYOUTS = ("csr", "channel0", "channel1")


def _build(module: nn.Module, weight: torch.Tensor, mask: torch.Tensor, layout: str,
           scheme: Scheme | None = None) -> CompressedLayer:
    """The compressed form of a Linear / Conv2d `module` keeping `weight` at `mask`."""
    linear = isinstance(module, nn.Linear)
    if layout == "csr":
        layer = (CompressedLinear.from_linear if linear else CompressedConv2d.from_conv)(module, weight, mask)
        if scheme is not None:
            layer.use_units(scheme.units(tuple(weight.shape)))
        return layer
    if scheme is not None:
        raise ValueError(f"a scheme's units apply to the csr layout; {layout!r} layers keep whole channels")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown compressed layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    dim = int(layout[-1])
    return (ChannelLinear.from_linear if linear else ChannelConv2d.from_conv)(module, weight, mask, dim)


def can_compress(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or CompressedConv2d.supports(module)


def plain_mask(weight: torch.Tensor, layout: str) -> torch.Tensor:
    """What a layer without a mask keeps: its nonzero weights (csr), or every channel holding
    one, whole, zeros inside included (channel0 / channel1). Lossless either way."""
    nonzero = weight != 0
    if layout == "csr":
        return nonzero
    dim = int(layout[-1])
    kept = _channels_touched(nonzero, dim)
    return kept.view([-1 if d == dim else 1 for d in range(weight.dim())]).expand_as(weight).clone()


def _channels_touched(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Per channel along `dim`: whether the mask keeps any of its weights."""
    return mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(1)


def saves_memory(weight: torch.Tensor, mask: torch.Tensor, layout: str) -> bool:
    """Whether `layout` stores `weight` under `mask` in fewer bytes than the dense weight: CSR
    spends a 4-byte column index per kept value (and a row offset per row), a channel layer an
    8-byte index per kept channel."""
    value_bytes, dense_bytes = weight.element_size(), weight.numel() * weight.element_size()
    kept = int(mask.sum())
    if layout == "csr":
        return kept * (value_bytes + 4) + (weight.shape[0] + 1) * 4 < dense_bytes
    channels = int(_channels_touched(mask, int(layout[-1])).sum())
    return kept * value_bytes + channels * 8 < dense_bytes


def _default_layers(model: nn.Module, layout: str, scheme: Scheme | None) -> list[str]:
    """Every masked layer that can be compressed, and every plain one whose exact zeros make
    `layout` smaller than the dense weight (not under a scheme: its units cannot be read off
    zeros). Raises, saying how to name layers, when there is nothing to compress."""
    modules = dict(model.named_modules())
    masked = [n for n, m in modules.items() if is_masked(m) and can_compress(m)]
    skipped = [n for n, m in modules.items() if is_masked(m) and not can_compress(m)]
    if skipped:
        log.info(f"kept in masked storage (no compressed form): {', '.join(skipped)}")
    plain = [n for n, m in modules.items() if not is_masked(m) and can_compress(m)]
    sparse = [] if scheme is not None else [
        n for n in plain if saves_memory(modules[n].weight, plain_mask(modules[n].weight.detach(), layout), layout)
    ]
    if sparse:
        log.info(f"compressing unmasked layer(s) by their exact zeros ({layout} is smaller than dense): "
                 f"{', '.join(sparse)}")
    if masked or sparse or compressed_layers(model):
        return masked + sparse
    rule = ("under a scheme, only masked layers are chosen" if scheme is not None
            else f"too few exact zeros for the {layout} form to be smaller than the dense weight")
    raise ValueError(
        f"nothing to compress: the model has no masked layer, and its Linear/Conv2d layers have {rule}. "
        f"Name the layers to compress anyway, e.g. compress(model, layers={plain[:3]!r})"
        + ("" if plain else " (the model has no Linear or Conv2d layer with groups=1)")
    )


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
    model: nn.Module, layers: Iterable[str] | None = None, optimizer: torch.optim.Optimizer | None = None,
    *, layout: str = "csr", scheme: Scheme | None = None,
) -> dict[str, CompressedLayer]:
    """Compress the named layers into `layout`; returns the new modules.

    By default: every masked layer that can be, and every plain (unmasked) one whose exact zeros
    make the compressed form smaller than the dense weight (a model pruned elsewhere, its masks
    folded into the weights); a model with neither is a ValueError saying how to name layers.
    A masked layer keeps exactly its mask's positions, zeros included (a weight regrown at zero
    is still part of the network); a plain layer keeps its nonzero weights (channel layouts:
    every channel holding one, whole). The channel layouts need masks of whole channels;
    `scheme` makes CSR mutation keep that scheme's units whole (block row segments, pattern
    kernels: `Scheme.units`); the mask must consist of them.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown compressed layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    modules = dict(model.named_modules())
    names = _default_layers(model, layout, scheme) if layers is None else list(layers)
    built = {}
    for name in names:  # build everything first: a bad layer leaves the model untouched
        if name not in modules:
            raise ValueError(f"unknown layer '{name}'")
        module = modules[name]
        if not can_compress(module):
            raise ValueError(
                f"layer '{name}' ({type(module).__name__}) has no compressed form: "
                "Linear and Conv2d with groups=1 are supported"
            )
        weight = module.weight.detach()
        mask = module.parametrizations.weight[0].mask.clone() if is_masked(module) else plain_mask(weight, layout)
        if not bool(mask.any()):
            raise ValueError(f"layer '{name}' has no kept weight: a compressed layer needs at least one")
        try:
            built[name] = _build(module, weight, mask, layout, scheme)
        except ValueError as exc:
            raise ValueError(f"layer '{name}': {exc}") from None
        built[name].train(module.training)
    for name, new in built.items():
        module = modules[name]
        old = original_weight(module) if is_masked(module) else module.weight
        positions = new.linear_indices()
        swap_parameter(optimizer, old, new.values, lambda state: state.flatten()[positions].clone())
        _set_module(model, name, new)
    return built


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
        if isinstance(layer, (CompressedLinear, ChannelLinear)):
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


def layouts_of(model: nn.Module) -> dict[str, str]:
    """{layer name: layout} of the model's compressed layers (what a model file records)."""
    return {name: layer.layout for name, layer in sorted(compressed_layers(model).items())}


def prepare_for_loading(model: nn.Module, layers: Iterable[str] | dict[str, str]) -> None:
    """Make the named layers compressed (one kept weight or channel as a placeholder) so that a
    compressed state dict can be loaded into a freshly built model: loading resizes and checks
    each layer. `layers` maps names to layouts; a plain list means CSR (older model files)."""
    layouts = dict(layers) if isinstance(layers, dict) else {name: "csr" for name in layers}
    modules = dict(model.named_modules())
    for name, layout in layouts.items():
        module = modules.get(name)
        if module is None or not can_compress(module):
            raise ValueError(f"cannot hold compressed layer '{name}': the model has no Linear/Conv2d of that name")
        mask = torch.zeros_like(module.weight, dtype=torch.bool)
        if layout == "csr":
            mask.view(-1)[0] = True
        elif layout in LAYOUTS:
            mask.select(int(layout[-1]), 0).fill_(True)
        else:
            raise ValueError(f"layer '{name}': unknown compressed layout {layout!r} (known: {', '.join(LAYOUTS)})")
        _set_module(model, name, _build(module, module.weight.detach(), mask, layout))
