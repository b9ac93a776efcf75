"""The sparsity core: masked parameters, schemes and allocation (criteria live in `slimkit.importance`).

    from slimkit import sparse
    scheme = sparse.make_scheme("block", block=(8, 1), prune="cols")
    masks = {name: scheme.make_mask(scores[name], density) for name, density in densities.items()}
    sparse.apply_masks(model, masks); print(sparse.sparsity_report(model))
"""

from slimkit.sparse.allocation import ALLOCATIONS, allocate, check_sparsity, erk_share
from slimkit.sparse.masking import (
    SparsityReport, WeightMask, apply_masks, enforce_masks, get_masks, is_masked, masked_layers, original_weight,
    remove_masks, sparsity_report, zero_optimizer_state,
)
from slimkit.sparse.schemes import Scheme, make_scheme

__all__ = [
    "ALLOCATIONS", "Scheme", "SparsityReport", "WeightMask", "allocate", "apply_masks",
    "check_sparsity", "enforce_masks", "erk_share", "get_masks", "is_masked", "make_scheme",
    "masked_layers", "original_weight", "remove_masks", "sparsity_report", "zero_optimizer_state",
]
