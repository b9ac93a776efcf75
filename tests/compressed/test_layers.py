"""Compressed layers against the masked-dense reference: outputs, input gradients and value
gradients, float64 (rel. error < 1e-10) and float32 (< 1e-5)."""

import pytest
import torch
from torch import nn

from slimkit.compressed import CompressedConv2d, CompressedLinear, compress
from slimkit.sparse.masking import apply_masks, original_weight

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _mask(shape, density, generator):
    mask = torch.rand(shape, generator=generator) < density
    mask[0] = False  # an empty row (output unit with no weight)
    mask[-1] = True  # a fully dense row
    return mask


def _relative_error(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _check_against_masked(make_layer, input_shape, density, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = make_layer().to(dtype)
    holder = nn.Sequential(layer)
    apply_masks(holder, {"0": _mask(layer.weight.shape, density, g)})
    x = torch.randn(input_shape, dtype=dtype, generator=g, requires_grad=True)
    upstream = None

    def run():
        nonlocal upstream
        out = holder(x)
        if upstream is None:
            upstream = torch.randn(out.shape, dtype=dtype, generator=g)
        (out * upstream).sum().backward()
        return out.detach()

    ref_out = run()
    ref_dx = x.grad.clone()
    ref_dw = original_weight(holder[0]).grad.clone()
    x.grad = None
    compressed = compress(holder)["0"]
    out = run()
    tol = TOLERANCE[dtype]
    assert _relative_error(out, ref_out) < tol
    assert _relative_error(x.grad, ref_dx) < tol
    kept_grad = ref_dw.flatten()[compressed.linear_indices()]
    assert _relative_error(compressed.values.grad, kept_grad) < tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(4))
def test_linear_matches_masked_dense(dtype, seed):
    g = torch.Generator().manual_seed(100 + seed)
    in_f, out_f, batch = (int(v) for v in torch.randint(3, 70, (3,), generator=g))
    density = [0.02, 0.1, 0.5, 0.95][seed]
    _check_against_masked(lambda: nn.Linear(in_f, out_f, bias=seed % 2 == 0), (batch, in_f), density, dtype, seed)


def test_linear_accepts_extra_leading_dims():
    _check_against_masked(lambda: nn.Linear(12, 7), (3, 5, 12), 0.3, torch.float64, 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "conv, size",
    [
        (dict(in_channels=3, out_channels=8, kernel_size=3, padding=1), 9),
        (dict(in_channels=4, out_channels=5, kernel_size=(3, 2), stride=2, padding=(1, 0)), 11),
        (dict(in_channels=2, out_channels=6, kernel_size=3, dilation=2, bias=False), 10),
        (dict(in_channels=6, out_channels=4, kernel_size=1), 5),
    ],
)
def test_conv2d_matches_masked_dense(dtype, conv, size):
    _check_against_masked(lambda: nn.Conv2d(**conv), (3, conv["in_channels"], size, size), 0.2, dtype, 1)


def test_grouped_conv_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="groups=1"):
        CompressedConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=4), torch.ones(4, 1, 3, 3), torch.ones(4, 1, 3, 3, dtype=torch.bool))


def test_loading_resizes_to_the_stored_structure_and_checks_it():
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(20, 10))
    apply_masks(source, {"0": torch.rand(10, 20) < 0.3})
    compress(source)
    target = nn.Sequential(nn.Linear(20, 10))
    apply_masks(target, {"0": torch.rand(10, 20) < 0.7})
    compress(target)
    target.load_state_dict(source.state_dict())
    x = torch.randn(4, 20)
    assert torch.equal(target(x), source(x))

    bad = dict(source.state_dict())
    bad["0.col_indices"] = bad["0.col_indices"].clone()
    bad["0.col_indices"][-1] = 25
    with pytest.raises(RuntimeError, match="out of range"):
        target.load_state_dict(bad)
    bad["0.col_indices"] = source.state_dict()["0.col_indices"].long()
    with pytest.raises(RuntimeError, match="int32"):
        target.load_state_dict(bad)


def test_a_layer_without_weights_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        CompressedLinear.from_linear(nn.Linear(4, 3), torch.ones(3, 4), torch.zeros(3, 4, dtype=torch.bool))
