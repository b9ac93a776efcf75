"""Parameter counts and sizes."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrize import ParametrizationList


def is_compressed(module: nn.Module) -> bool:
    """A layer from `slimkit.compressed` (values + indices, no dense weight); duck-typed so the
    metrics need not import the layers they measure."""
    return all(hasattr(module, name) for name in ("weight_shape", "values", "linear_indices"))


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv and Linear layers (dense, masked or compressed): the layers whose weights sparsity
    and FLOP counting refer to."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or is_compressed(module)
    }


def weight_shape(module: nn.Module) -> tuple[int, ...]:
    """Shape of a Conv/Linear layer's weight, whatever its storage."""
    return tuple(module.weight_shape) if is_compressed(module) else tuple(module.weight.shape)


def weight_counts(module: nn.Module) -> tuple[int, int]:
    """(weights, nonzero weights) of one Conv/Linear layer, whatever its storage."""
    if is_compressed(module):
        return module.weight_numel, module.count_nonzero()
    return module.weight.numel(), int((module.weight != 0).sum())


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
        if is_compressed(module):  # the architecture's weights; only the kept ones can be nonzero
            weights, kept = weight_counts(module)
            total += weights
            nonzero += kept
        for name, _ in module.named_parameters(recurse=False):
            if is_compressed(module) and name == "values":
                continue
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
        weights, nonzero = weight_counts(module)
        zeros += weights - nonzero
        total += weights
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
