"""The one place that resizes a model: replace tensors by smaller ones, then make the attributes
that describe widths (in_channels, num_features, embed_dim, declared width attributes) match them.

Used by `remove_units` (slicing kept channels out of a model) and by `load_pruned_model`
(reshaping a freshly built model to a pruned state dict).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from slimkit.structured.trace import ops as _builtin_ops  # noqa: F401 - registers the built-in width attributes
from slimkit.structured.trace.registry import declared_width, declared_widths

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_WIDTH_SNAPSHOT = ("groups", "out_channels", "num_channels", "num_groups")


def replace_tensors(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Set each tensor of `model` named in `tensors` (qualname -> new value), keeping parameters
    parameters (with their requires_grad) and buffers buffers, then sync the owners' layer widths."""
    touched: dict[str, tuple[nn.Module, dict[str, int]]] = {}
    for qualname, value in tensors.items():
        module_name, _, attr = qualname.rpartition(".")
        module = model.get_submodule(module_name)
        touched.setdefault(module_name, (module, {k: getattr(module, k) for k in _WIDTH_SNAPSHOT if hasattr(module, k)}))
        old = getattr(module, attr)
        if isinstance(old, nn.Parameter):
            setattr(module, attr, nn.Parameter(value, requires_grad=old.requires_grad))
        else:
            module._buffers[attr] = value
    for module, old in touched.values():
        _sync_layer_widths(module, old)


def _sync_layer_widths(module: nn.Module, old: dict[str, int]) -> None:
    """Make a torch.nn layer's width attributes match its (resized) tensors; `old` holds the widths
    before resizing."""
    if isinstance(module, _CONVS):
        module.out_channels = module.weight.shape[0]
        if old["groups"] > 1:  # whole groups were removed: outputs per group are unchanged
            module.groups = module.out_channels // (old["out_channels"] // old["groups"])
        module.in_channels = module.groups * module.weight.shape[1]
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        tensor = module.weight if module.weight is not None else module.running_mean
        if tensor is not None:
            module.num_features = tensor.shape[0]
    elif isinstance(module, nn.GroupNorm) and module.weight is not None:
        module.num_channels = module.weight.shape[0]
        # whole groups were removed, or channels of a single group (traced into F.group_norm)
        module.num_groups = max(1, module.num_channels // (old["num_channels"] // old["num_groups"]))
    elif isinstance(module, nn.LayerNorm) and module.weight is not None:
        module.normalized_shape = tuple(module.weight.shape)
    elif isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
        width = module.in_proj_weight.shape[1]
        module.embed_dim = module.kdim = module.vdim = width
        module.head_dim = width // module.num_heads


def sync_width_attributes(model: nn.Module) -> None:
    """Rewrite the declared width attributes (`register_width_attributes`) of every module from the
    pruned tensors they describe."""
    for module in model.modules():
        for attr, rule in declared_widths(module).items():
            setattr(module, attr, declared_width(module, rule))
