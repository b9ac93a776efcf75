"""Integer grids and the quantize / dequantize arithmetic, in the exact form ONNX Runtime uses.

QAT simulates the int8 model that `slimkit.quant.ptq` later writes through ORT, so the formulas
here mirror `onnxruntime.quantization.quant_utils.compute_scale_zp`: the range always contains
zero; symmetric ranges become [-absmax, absmax] with zero point at the grid's middle; rounding is
half-to-even (`torch.round`, ONNX QuantizeLinear). Weights: int8 symmetric per output channel,
[-127, 127], or [-64, 64] with `reduce_range` (7-bit, no int16 overflow on CPUs without VNNI).
Activations: uint8 [0, 255] (or int8 [-128, 127]) asymmetric per tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Grid:
    """An integer grid [qmin, qmax] and whether ranges on it are made symmetric."""

    qmin: int
    qmax: int
    symmetric: bool

    def __post_init__(self) -> None:
        if not self.qmin <= 0 <= self.qmax or self.qmin == self.qmax:
            raise ValueError(f"an integer grid needs qmin <= 0 <= qmax and qmin < qmax, got [{self.qmin}, {self.qmax}]")


def weight_grid(reduce_range: bool = True) -> Grid:
    return Grid(-64, 64, True) if reduce_range else Grid(-127, 127, True)


def activation_grid(dtype: str = "uint8") -> Grid:
    if dtype == "uint8":
        return Grid(0, 255, False)
    if dtype == "int8":
        return Grid(-128, 127, False)
    raise ValueError(f"activation dtype must be 'uint8' or 'int8', got {dtype!r}")


def scale_zero_point(rmin: torch.Tensor, rmax: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float32) and zero point (as float, integral) mapping [rmin, rmax] onto `grid`.

    Works elementwise, so per-channel ranges give per-channel parameters.
    """
    rmin = torch.minimum(torch.as_tensor(rmin, dtype=torch.float32), torch.zeros(()))
    rmax = torch.maximum(torch.as_tensor(rmax, dtype=torch.float32), torch.zeros(()))
    if grid.symmetric:
        absmax = torch.maximum(rmin.abs(), rmax.abs())
        rmin, rmax = -absmax, absmax
    scale = ((rmax.double() - rmin.double()) / (grid.qmax - grid.qmin)).float()
    degenerate = scale < torch.finfo(torch.float32).tiny
    if grid.symmetric:
        zero_point = torch.full_like(scale, float(round((grid.qmin + grid.qmax) / 2)))
    else:
        zero_point = torch.round(grid.qmin - rmin.double() / scale.double().clamp_min(1e-45)).float()
    scale = torch.where(degenerate, torch.ones_like(scale), scale)
    zero_point = torch.where(degenerate, torch.zeros_like(zero_point), zero_point).clamp(grid.qmin, grid.qmax)
    return scale, zero_point


def _broadcast(param: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    if axis is None or param.dim() == 0:
        return param
    shape = [1] * x.dim()
    shape[axis] = -1
    return param.reshape(shape)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, grid: Grid, axis: int | None = None) -> torch.Tensor:
    """Integer codes (held in a float tensor) of `x`: clamp(round(x / scale) + zero_point)."""
    s, z = _broadcast(scale, x, axis), _broadcast(zero_point, x, axis)
    return torch.clamp(torch.round(x / s) + z, grid.qmin, grid.qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    return (q - _broadcast(zero_point, q, axis)) * _broadcast(scale, q, axis)


class _FakeQuantSTE(torch.autograd.Function):
    """quantize -> dequantize forward; straight-through backward (gradient 1 inside the grid's
    range, 0 where the value was clipped), as in Bengio et al. 2013 / Jacob et al. 2018."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax, axis):  # type: ignore[override]
        s, z = _broadcast(scale, x, axis), _broadcast(zero_point, x, axis)
        codes = torch.round(x / s) + z
        ctx.save_for_backward((codes >= qmin) & (codes <= qmax))
        return (torch.clamp(codes, qmin, qmax) - z) * s

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None, None


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, grid: Grid, axis: int | None = None) -> torch.Tensor:
    """Round `x` onto the grid and back, passing gradients straight through (STE)."""
    return _FakeQuantSTE.apply(x, scale, zero_point, grid.qmin, grid.qmax, axis)


def per_channel_weight_qparams(weight: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel (axis 0) parameters from the weight's own min/max."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    return scale_zero_point(flat.min(dim=1).values, flat.max(dim=1).values, grid)
