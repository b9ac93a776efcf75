"""Wanda's scores are |W_ij| · ‖X_j‖₂ over every calibration row."""

import pytest
import torch
from torch import nn

from slimkit.importance import ScoringInputs, get_criterion, wanda_scores


def test_wanda_scores_equal_the_formula_on_one_linear_with_known_inputs():
    layer = nn.Linear(3, 2, bias=True).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-3.0, 0.25, 4.0]]))
    first = torch.tensor([[[1.0, 0.0, 2.0], [2.0, 1.0, 0.0]]], dtype=torch.float64)  # (1, 2 tokens, 3)
    second = torch.tensor([[[0.0, 3.0, 2.0], [4.0, 0.0, 1.0]]], dtype=torch.float64)
    norms = torch.tensor([(1 + 4 + 16) ** 0.5, (1 + 9) ** 0.5, (4 + 4 + 1) ** 0.5], dtype=torch.float64)
    expected = layer.weight.detach().abs() * norms

    batches = [(first, torch.zeros(1)), (second, torch.zeros(1)), (100 * second, torch.zeros(1))]
    scores = get_criterion("wanda")(layer, {"fc": layer}, ScoringInputs(batches=batches, num_batches=2))
    torch.testing.assert_close(scores["fc"], expected)
    torch.testing.assert_close(wanda_scores(layer.weight, norms), expected)


def test_wanda_scores_a_conv_by_its_unfolded_patches_and_needs_batches():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    scores = get_criterion("wanda")(conv, {"c": conv}, ScoringInputs(batches=[(x, None)]))
    patches = torch.nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)
    expected = conv.weight.detach().abs() * patches.norm(dim=0).reshape(1, 2, 3, 3)
    torch.testing.assert_close(scores["c"], expected)
    with pytest.raises(ValueError, match="needs batches"):
        get_criterion("wanda")(conv, {"c": conv}, ScoringInputs())
