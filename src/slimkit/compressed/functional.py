"""The compressed product and its gradients.

out = W @ dense, with W a (rows x cols) CSR matrix held as `values` + int32 indices and dense a
(cols x N) matrix: activations laid out features x batch, which is the layout the kernels read
fastest (each stored weight scales one contiguous row of `dense`). Products go through
`slimkit.compressed.kernels`: native C++ kernels on CPU, torch.sparse otherwise.

- forward: CSR x dense (spmm);
- input gradient: W^T @ grad, an spmm on W^T's CSR structure kept beside W's (the values gathered
  through a permutation), because CSR x dense is several times faster than CSC x dense or
  dense x CSR on CPU;
- value gradient: (grad @ dense^T) sampled at W's nonzeros only (SDDMM).

`dense` and `grad_out` are made contiguous in that (features x batch) layout (a no-op when a
compressed layer hands its output to the next one). None of the three creates a tensor of the
dense weight's size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slimkit.compressed import kernels


class CSRMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, dense, crow, col, t_crow, t_col, t_perm, shape):  # type: ignore[override]
        dense = dense.contiguous()
        ctx.save_for_backward(values, dense, crow, col, t_crow, t_col, t_perm)
        ctx.shape = shape
        return kernels.spmm(crow, col, values, dense, shape)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        values, dense, crow, col, t_crow, t_col, t_perm = ctx.saved_tensors
        rows, cols = ctx.shape
        grad_out = grad_out.contiguous()
        grad_values = grad_dense = None
        if ctx.needs_input_grad[0]:
            grad_values = kernels.sddmm(crow, col, grad_out, dense, (rows, cols))
        if ctx.needs_input_grad[1]:
            grad_dense = kernels.spmm(t_crow, t_col, values.index_select(0, t_perm), grad_out, (cols, rows))
        return grad_values, grad_dense, None, None, None, None, None, None


def csr_matmul(
    values: Tensor, dense: Tensor, crow: Tensor, col: Tensor, t_crow: Tensor, t_col: Tensor, t_perm: Tensor,
    shape: tuple[int, int],
) -> Tensor:
    """(rows x cols CSR) @ (cols x N dense) -> rows x N, differentiable in `values` and `dense`."""
    return CSRMatmul.apply(values, dense, crow, col, t_crow, t_col, t_perm, shape)
