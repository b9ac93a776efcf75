"""Optimal Brain Surgeon pruning, layer by layer, with compensation of the remaining weights.

Each layer is pruned to keep its output on calibration data as it was: for a row w of the weight
matrix and layer inputs x, the error ||(w - w') X||² is a quadratic in w' with Hessian
H = 2/N Σ x xᵀ (N = number of input rows, Linear rows or Conv2d patches). OBS (Hassibi & Stork
1993) removes the weight q with the smallest error w_q² / [H⁻¹]_qq and moves the others by
-w_q / [H⁻¹]_qq · H⁻¹[:, q], the exact optimum once q is gone. OBC (Frantar & Alistarh 2022)
applies this greedily one weight at a time per row, dropping q from H⁻¹ with one step of Gaussian
elimination, which also makes the final row the least-squares optimum on its kept support;
SparseGPT (Frantar & Alistarh 2023) is its large-scale approximation: one Cholesky factor of H⁻¹
shared by all rows, columns pruned left to right with the error pushed onto the columns not yet
visited, and the mask chosen block by block; O(cols³ + rows · cols²) instead of OBC's
O(rows · cols³). `obs_prune_weight(method="auto")` runs exact OBC where it is cheap and SparseGPT
elsewhere.

All Hessians come from one calibration pass over the unpruned model (rather than OBC's
layer-after-layer re-calibration), in eval mode so that BatchNorm statistics are not updated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimkit.importance.activations import InputStatistics, run_calibration
from slimkit.sparse.schemes import NMScheme
from slimkit.utils.progress import progress as show_progress

_HINV_BUDGET = 1 << 24  # float64 elements of row-wise inverse Hessians held at once (128 MiB)


def collect_input_hessians(
    model: nn.Module, layers: dict[str, nn.Module], batches: Iterable[Sequence[Tensor]], *, num_batches: int,
    progress: str = "auto",
) -> dict[str, Tensor]:
    """H = 2/N Σ x xᵀ (float64) of each layer's inputs over `num_batches` calibration batches.

    The inputs are captured with forward hooks (`InputStatistics`); for Conv2d they are the
    unfolded patches (same padding, stride and dilation as the layer), ordered like
    ``weight.reshape(out, -1)``. `progress` is the display mode of the calibration pass (see
    `slimkit.utils.progress`).
    """
    with InputStatistics(layers, "gram") as stats:
        run_calibration(model, batches, num_batches=num_batches, desc="obs calibration", progress=progress)
    return stats.hessians()


def _damped_inverse(hessian: Tensor, damp: float) -> Tensor:
    """(H + damp · mean(diag H) · I)⁻¹; the dampening keeps H invertible when inputs are degenerate."""
    size = hessian.shape[0]
    damped = hessian + damp * hessian.diagonal().mean() * torch.eye(size, dtype=hessian.dtype, device=hessian.device)
    factor, info = torch.linalg.cholesky_ex(damped)
    if int(info) != 0:
        raise ValueError("the damped Hessian is not positive definite; increase damp")
    return torch.cholesky_inverse(factor)


def _obs_rows(weight: Tensor, hinv: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """Greedy exact OBS on a block of rows at once, each row with its own copy of H⁻¹."""
    rows, cols = weight.shape
    index = torch.arange(rows, device=weight.device)
    w = weight.clone()
    hinv = hinv.expand(rows, cols, cols).clone()
    mask = torch.ones(rows, cols, dtype=torch.bool, device=weight.device)
    for _ in range(cols - keep):
        diag = hinv.diagonal(dim1=1, dim2=2)
        error = (w.square() / diag).masked_fill(~mask, float("inf"))  # removed weights have [H⁻¹]_qq = 0
        q = error.argmin(dim=1)
        pivot = diag[index, q]
        column = hinv[index, :, q]  # H⁻¹[:, q] of each row, (rows, cols)
        w -= (w[index, q] / pivot)[:, None] * column
        w[index, q] = 0.0
        mask[index, q] = False
        hinv -= column[:, :, None] * hinv[index, q, :][:, None, :] / pivot[:, None, None]
    return w.masked_fill(~mask, 0.0), mask


_EXACT_BUDGET = 2e9  # rows * cols^3 below which exact OBC is cheap enough (seconds on a CPU)


def _sparsegpt_rows(
    w: Tensor, hinv: Tensor, keep: int, block: int = 128, nm: NMScheme | None = None
) -> tuple[Tensor, Tensor]:
    """SparseGPT on all rows: each row ends with exactly `keep` weights. Per block, every row
    prunes its share of the row's total (cumulative rounding, so the shares add up exactly),
    choosing the weights with the smallest w² / [U]_qq², U the upper Cholesky factor of H⁻¹.
    With an `nm` scheme the mask of each group of m columns is chosen instead when the sweep
    reaches the group, from the weights as updated so far (SparseGPT's N:M variant)."""
    rows, cols = w.shape
    w = w.clone()
    upper = torch.linalg.cholesky(hinv, upper=True)
    mask = torch.ones(rows, cols, dtype=torch.bool, device=w.device)
    pruned_per_row = cols - keep
    for start in range(0, cols, block):
        end = min(start + block, cols)
        count = round(pruned_per_row * end / cols) - round(pruned_per_row * start / cols)
        w1, u1 = w[:, start:end].clone(), upper[start:end, start:end]
        keep1 = torch.ones_like(w1, dtype=torch.bool)
        if count > 0 and nm is None:
            saliency = w1.square() / u1.diagonal().square()
            drop = torch.argsort(saliency, dim=1, stable=True)[:, :count]
            keep1.scatter_(1, drop, False)
        errors = torch.zeros_like(w1)
        for j in range(end - start):
            if nm is not None and j % nm.m == 0:
                group = slice(j, j + nm.m)
                keep1[:, group] = nm.make_mask(w1[:, group].square() / u1.diagonal()[group].square(), None)
            q = w1[:, j] * keep1[:, j]
            errors[:, j] = (w1[:, j] - q) / u1[j, j]
            w1[:, j:] -= errors[:, j : j + 1] * u1[j : j + 1, j:]
        w[:, start:end] = w1
        w[:, end:] -= errors @ upper[start:end, end:]
        mask[:, start:end] = keep1
    return w.masked_fill(~mask, 0.0), mask


def obs_prune_weight(
    weight2d: Tensor, hessian: Tensor, density: float, *, damp: float = 0.01, method: str = "auto",
    block: int = 128, nm: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Row-wise OBS: prune each row to round(density · cols) weights, compensating the rest.

    method="exact" is OBC (below); "sparsegpt" is its fast approximation; "auto" picks exact
    OBC when rows · cols³ is small. `block` is SparseGPT's mask-selection block (columns).
    ``nm=(n, m)`` keeps exactly n of every m consecutive weights of a row (SparseGPT only, so
    "auto" means "sparsegpt"); `density` must then be n / m and `block` a multiple of m.

    For each row, repeatedly remove the remaining weight q with the smallest w_q² / [H⁻¹]_qq,
    update the other remaining weights by -w_q / [H⁻¹]_qq · H⁻¹[:, q], and remove q from H⁻¹
    (H⁻¹ ← H⁻¹ - H⁻¹[:, q] H⁻¹[q, :] / [H⁻¹]_qq). H is dampened to H + damp · mean(diag H) · I.
    Every row keeps the same count (Python's round, half to even). Computed in float64.
    Returns (new weight in weight2d's dtype with exact zeros where pruned, bool mask of kept weights).
    """
    if weight2d.dim() != 2:
        raise ValueError(f"weight2d must be 2-D, got shape {tuple(weight2d.shape)}")
    rows, cols = weight2d.shape
    if hessian.shape != (cols, cols):
        raise ValueError(f"hessian must be ({cols}, {cols}) for {cols} weight columns, got {tuple(hessian.shape)}")
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if damp < 0:
        raise ValueError(f"damp must be non-negative, got {damp}")
    if method not in ("auto", "exact", "sparsegpt"):
        raise ValueError(f"method must be auto, exact or sparsegpt, got {method!r}")
    scheme = None if nm is None else _nm_scheme(nm, density, method, block, cols)
    keep = round(density * cols)
    w = weight2d.detach().to(torch.float64)
    hinv = _damped_inverse(hessian.detach().to(device=w.device, dtype=torch.float64), damp)
    if scheme is not None or method == "sparsegpt" or (method == "auto" and rows * cols**3 > _EXACT_BUDGET):
        new, mask = _sparsegpt_rows(w, hinv, keep, block, scheme)
        return new.to(weight2d.dtype), mask
    chunk = max(1, _HINV_BUDGET // (cols * cols))
    pruned = [_obs_rows(w[start : start + chunk], hinv, keep) for start in range(0, rows, chunk)]
    new = torch.cat([block for block, _ in pruned]) if pruned else w.clone()
    mask = torch.cat([block for _, block in pruned]) if pruned else torch.ones_like(w, dtype=torch.bool)
    return new.to(weight2d.dtype), mask


def _nm_scheme(nm: tuple[int, int], density: float, method: str, block: int, cols: int) -> NMScheme:
    """The N:M scheme of ``nm=(n, m)``, after checking that SparseGPT can produce it here."""
    scheme = NMScheme(*nm)
    if method == "exact":
        raise ValueError("nm masks are chosen by SparseGPT's sweep; use method='sparsegpt' or 'auto'")
    if abs(density - scheme.n / scheme.m) > 1e-9:
        raise ValueError(f"density must be n/m = {scheme.n / scheme.m} with nm={nm}, got {density}")
    if cols % scheme.m or block % scheme.m:
        raise ValueError(f"nm={nm} needs the columns ({cols}) and block ({block}) to be multiples of {scheme.m}")
    return scheme


def _write_weight(layer: nn.Module, value: Tensor) -> None:
    """Overwrite the stored weight in place (the parametrization's original if the weight is parametrized)."""
    if parametrize.is_parametrized(layer, "weight"):
        target = layer.parametrizations.weight.original
    else:
        target = layer.weight
    with torch.no_grad():
        target.copy_(value.to(target.dtype))


def obs_prune(
    model: nn.Module, layers: dict[str, nn.Module], batches: Iterable[Sequence[Tensor]], densities: dict[str, float],
    *, num_batches: int = 8, damp: float = 0.01, progress: str = "auto",
) -> dict[str, Tensor]:
    """Prune every layer in place with row-wise OBS to its density; returns the bool keep-masks.

    `densities` must name exactly the layers in `layers`. The compensated weights (exact zeros
    where pruned) are written into ``weight`` in place, or into
    ``parametrizations.weight.original`` for a parametrized weight: they are computed from the
    effective weight and assume an elementwise-mask parametrization, whose mask the caller should
    then replace by the returned one (the old mask still applies on top until then).
    `progress` displays the calibration pass and the layer-by-layer solves (see `slimkit.utils.progress`).
    """
    if set(densities) != set(layers):
        missing, unknown = sorted(set(layers) - set(densities)), sorted(set(densities) - set(layers))
        raise ValueError(f"densities must name exactly the layers; missing {missing}, unknown {unknown}")
    hessians = collect_input_hessians(model, layers, batches, num_batches=num_batches, progress=progress)
    masks = {}
    for name, layer in show_progress(layers.items(), desc="obs layers", mode=progress, unit="layers"):
        weight = layer.weight.detach()
        new, mask = obs_prune_weight(weight.reshape(weight.shape[0], -1), hessians[name], densities[name], damp=damp)
        _write_weight(layer, new.reshape(weight.shape))
        masks[name] = mask.reshape(weight.shape)
    return masks
