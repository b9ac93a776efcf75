"""Parameter counts and sizes."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrize import ParametrizationList


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv and Linear layers: the layers whose weights sparsity and FLOP counting refer to."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))
    }


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, nonzero) over all parameters, counting each shared tensor once.

    Parameters are read through the module attributes, so masked (parametrized) weights are
    counted as the model actually uses them.
    """
    seen: set[int] = set()
    total = nonzero = 0
    for module in model.modules():
        if isinstance(module, ParametrizationList):
            continue  # the unmasked originals; the masked weights are counted below
        for name, _ in module.named_parameters(recurse=False):
            tensor = getattr(module, name)
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            total += tensor.numel()
            nonzero += int((tensor != 0).sum())
    for module in model.modules():  # weights exposed through torch.nn.utils.parametrize
        if hasattr(module, "parametrizations"):
            for name in module.parametrizations:
                tensor = getattr(module, name)
                total += tensor.numel()
                nonzero += int((tensor != 0).sum())
    return total, nonzero


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of zeros over the weights of all Conv/Linear layers (biases excluded)."""
    zeros = total = 0
    for module in prunable_layers(model).values():
        weight = module.weight
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict (parameters and buffers), each storage counted once."""
    seen: set[int] = set()
    size = 0
    for tensor in model.state_dict().values():
        key = tensor.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        size += tensor.numel() * tensor.element_size()
    return size
