"""Network Slimming (Liu et al. 2017) with the API of the `netslim` package.

    update_bn(model, s=1e-4)             # between loss.backward() and optimizer.step()
                                         # (in slimkit's Trainer: slimkit.methods.SlimmingL1)
    pruned = prune(model, (3, 32, 32), prune_ratio=0.5)
    model = load_pruned_model(build(), torch.load(...))

Unlike netslim, BatchNorm layers that feed residual adds or concats are prunable too: the channel
graph keeps every coupled layer consistent. `reinitialize` gives the "train the pruned architecture
from scratch" baseline of Liu et al. 2019 (Rethinking the Value of Network Pruning).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from slimkit.structured.prune import prune_channels
from slimkit.structured.resize import replace_tensors, sync_width_attributes

BATCHNORMS = nn.modules.batchnorm._BatchNorm


@torch.no_grad()
def update_bn(model: nn.Module, s: float = 1e-4) -> None:
    """Add the L1 subgradient s * sign(gamma) to every BatchNorm scale's gradient."""
    if s < 0:
        raise ValueError(f"sparsity strength s must be >= 0, got {s}")
    for module in model.modules():
        if isinstance(module, BATCHNORMS) and module.weight is not None and module.weight.grad is not None:
            module.weight.grad.add_(torch.sign(module.weight), alpha=s)


def prune(
    model: nn.Module,
    input_shape: Sequence[int],
    prune_ratio: float = 0.5,
    *,
    ignored_layers: Iterable[str] = (),
    leaf_modules: Iterable[str | type] = (),
    min_keep_fraction: float = 0.0,
    inplace: bool = False,
) -> nn.Module:
    """Remove the `prune_ratio` fraction of channels with the smallest |gamma| (one global threshold).

    Channels with no BatchNorm (e.g. a Linear's outputs) are not pruned. Returns the pruned model.
    """
    return prune_channels(
        model, tuple(input_shape), prune_ratio, criterion="bn_gamma", scope="global", ignored_layers=ignored_layers,
        leaf_modules=leaf_modules, min_keep_fraction=min_keep_fraction, inplace=inplace,
    )


def load_pruned_model(model: nn.Module, pruned_state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Reshape a freshly built, unpruned `model` to the tensor shapes of `pruned_state_dict`, load it.

    Works for any model whose pruning only shrank tensors (conv/linear/norm widths), as `prune` does.
    """
    own = model.state_dict()
    unknown = sorted(set(pruned_state_dict) - set(own))
    if unknown:
        raise ValueError(f"the pruned state dict has keys the model lacks: {', '.join(unknown[:5])}")
    resized: dict[str, torch.Tensor] = {}
    for key, value in pruned_state_dict.items():
        if tuple(own[key].shape) == tuple(value.shape):
            continue
        if own[key].ndim != value.ndim or any(n > o for n, o in zip(value.shape, own[key].shape)):
            raise ValueError(
                f"'{key}' has shape {tuple(value.shape)} in the pruned state dict, which does not shrink the "
                f"model's {tuple(own[key].shape)}"
            )
        resized[key] = torch.empty_like(own[key]).resize_(value.shape)
    replace_tensors(model, resized)
    sync_width_attributes(model)
    model.load_state_dict(pruned_state_dict)
    return model


def reinitialize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh random weights for the (pruned) architecture: Liu et al. 2019's scratch baseline."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
        if isinstance(module, BATCHNORMS) and module.track_running_stats:
            module.reset_running_stats()
    return model
