"""SparseGPT with N:M masks: the pattern holds, the output error beats the same pattern by magnitude."""

import pytest
import torch

from slimkit.importance import obs_prune_weight
from slimkit.sparse import make_scheme

from tests.importance.test_obs import output_error, problem


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_nm_sparsegpt_keeps_the_pattern_and_beats_magnitude(n, m):
    weight, x, hessian = problem(3, rows=6, cols=16, samples=64)
    new, mask = obs_prune_weight(weight, hessian, n / m, nm=(n, m), block=8)
    scheme = make_scheme("nm", n=n, m=m)
    scheme.validate(mask)
    assert torch.equal(new != 0, mask)
    by_magnitude = weight * scheme.make_mask(weight.abs(), None)
    assert output_error(weight, new, x) < output_error(weight, by_magnitude, x)


def test_nm_options_are_checked():
    weight, _, hessian = problem(0, cols=8)
    with pytest.raises(ValueError, match="density must be n/m"):
        obs_prune_weight(weight, hessian, 0.4, nm=(2, 4))
    with pytest.raises(ValueError, match="method='sparsegpt'"):
        obs_prune_weight(weight, hessian, 0.5, nm=(2, 4), method="exact")
    with pytest.raises(ValueError, match="multiples of 4"):
        obs_prune_weight(weight, hessian, 0.5, nm=(2, 4), block=6)
