"""Index bookkeeping for compressed weights, done without ever building a dense-sized tensor.

A compressed weight is a (rows x cols) matrix (Linear: out x in; Conv2d: out x in*kh*kw) held as
CSR: `crow` (rows + 1) and `col` (nnz) int32 indices plus the nonzero values. Positions are also
handled as sorted int64 *linear indices* (row * cols + col), which makes set operations (is this
position active? sample positions that are not) plain sorted-array operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

INDEX_DTYPE = torch.int32


@dataclass(frozen=True)
class Transposed:
    """The CSR structure of the transposed matrix, and `perm` mapping its values to ours
    (values_of_transpose = values[perm]): what the input-gradient product needs."""

    crow: Tensor
    col: Tensor
    perm: Tensor


def check_structure(crow: Tensor, col: Tensor, shape: tuple[int, int], nnz: int | None = None) -> None:
    """Raise ValueError unless (crow, col) is a valid sorted CSR structure for `shape`.

    Run on anything loaded from a file: a bad index must be a clear error, never a crash inside
    a sparse kernel (torch's CSR kernels do not check their input).
    """
    rows, cols = shape
    for name, tensor in (("crow_indices", crow), ("col_indices", col)):
        if tensor.dtype != INDEX_DTYPE:
            raise ValueError(f"{name} must be {INDEX_DTYPE}, got {tensor.dtype}")
        if tensor.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if crow.numel() != rows + 1:
        raise ValueError(f"crow_indices has {crow.numel()} entries, a {rows}-row matrix needs {rows + 1}")
    if int(crow[0]) != 0 or int(crow[-1]) != col.numel():
        raise ValueError(
            f"crow_indices must start at 0 and end at the number of nonzeros ({col.numel()}), "
            f"got {int(crow[0])} ... {int(crow[-1])}"
        )
    if nnz is not None and col.numel() != nnz:
        raise ValueError(f"{col.numel()} column indices for {nnz} values")
    if col.numel() == 0:
        raise ValueError("a compressed layer needs at least one nonzero weight (density 0 computes nothing)")
    if bool((crow[1:] < crow[:-1]).any()):
        raise ValueError("crow_indices must be non-decreasing")
    if int(col.min()) < 0 or int(col.max()) >= cols:
        raise ValueError(f"col_indices out of range: must lie in [0, {cols}), got [{int(col.min())}, {int(col.max())}]")
    linear = to_linear(crow, col, cols)
    if bool((linear[1:] <= linear[:-1]).any()):
        raise ValueError("col_indices must be strictly increasing within each row (sorted, no duplicates)")


def row_ids(crow: Tensor) -> Tensor:
    """The row of every stored value (int64, nnz)."""
    counts = (crow[1:] - crow[:-1]).long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts)


def to_linear(crow: Tensor, col: Tensor, cols: int) -> Tensor:
    """Sorted int64 linear positions (row * cols + col) of the stored values."""
    return row_ids(crow) * cols + col.long()


def from_linear(linear: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """CSR (crow, col) of sorted unique linear positions."""
    rows, cols = shape
    row = torch.div(linear, cols, rounding_mode="floor")
    counts = torch.bincount(row, minlength=rows)
    crow = torch.zeros(rows + 1, dtype=torch.long, device=linear.device)
    crow[1:] = torch.cumsum(counts, 0)
    return crow.to(INDEX_DTYPE), (linear - row * cols).to(INDEX_DTYPE)


def transpose(crow: Tensor, col: Tensor, shape: tuple[int, int]) -> Transposed:
    """CSR structure of the transpose: O(nnz log nnz), no dense tensor."""
    rows, _ = shape
    linear_t = col.long() * rows + row_ids(crow)  # positions in the transposed matrix
    order = torch.argsort(linear_t, stable=True)
    t_crow, t_col = from_linear(linear_t[order], (shape[1], shape[0]))
    return Transposed(t_crow, t_col, order.to(INDEX_DTYPE))
