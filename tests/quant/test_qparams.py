import pytest
import torch

from slimkit.quant.qparams import (
    Grid, activation_grid, dequantize, fake_quantize, per_channel_weight_qparams, quantize, scale_zero_point, weight_grid,
)


@pytest.mark.parametrize("grid", [activation_grid("uint8"), activation_grid("int8"), weight_grid(True), weight_grid(False)])
def test_round_trip_error_is_at_most_half_a_step(grid):
    torch.manual_seed(0)
    x = torch.randn(1000) * 3 + 0.5
    scale, zp = scale_zero_point(x.min(), x.max(), grid)
    error = (dequantize(quantize(x, scale, zp, grid), scale, zp) - x).abs().max()
    assert error <= scale / 2 + 1e-6
    assert dequantize(quantize(torch.zeros(1), scale, zp, grid), scale, zp).item() == 0.0  # zero is exact


def test_per_channel_weights_bound_each_channel_by_its_own_step():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 0.1, 1.0, 10.0]).view(4, 1, 1, 1)
    grid = weight_grid(reduce_range=True)
    scale, zp = per_channel_weight_qparams(w, grid)
    assert torch.all(zp == 0)
    assert torch.allclose(scale, w.abs().flatten(1).max(1).values / 64)
    error = (dequantize(quantize(w, scale, zp, grid, axis=0), scale, zp, axis=0) - w).abs().flatten(1).max(1).values
    assert torch.all(error <= scale / 2 + 1e-7)


def test_straight_through_gradient():
    grid = activation_grid("uint8")
    scale, zp = scale_zero_point(torch.tensor(0.0), torch.tensor(1.0), grid)
    x = torch.tensor([-0.5, 0.2, 0.7, 1.5], requires_grad=True)
    y = fake_quantize(x, scale, zp, grid)
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))  # clipped values get no gradient
    assert torch.allclose(y[1:3], x[1:3].detach(), atol=float(scale) / 2)


def test_bad_grid_is_rejected():
    with pytest.raises(ValueError, match="qmin"):
        Grid(1, 255, False)
    with pytest.raises(ValueError, match="activation dtype"):
        activation_grid("int4")
