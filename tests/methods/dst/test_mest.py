"""MEST's phase schedules: Elastic Mutation and the soft memory bound."""

import pytest
import torch

from slimkit.methods import elastic_mutation_phases

from tests.methods.dst.helpers import fit, make_method
from tests.methods.test_prune_methods import SmallConvNet


def test_soft_memory_bound_trains_denser_then_settles():
    torch.manual_seed(0)
    model = SmallConvNet()
    method = make_method("mest-ems", model)
    _, inspector = fit(method, model)
    total = lambda masks: sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    early, late = total(inspector.masks[1]), total(inspector.masks[-1])
    assert early == pytest.approx(0.15, abs=0.02)  # s - 5%
    assert late == pytest.approx(0.10, abs=0.01)


@pytest.mark.parametrize("sparsity", [0.9, 0.98, 0.995])
def test_elastic_mutation_never_prunes_every_active_weight(sparsity):
    phases = elastic_mutation_phases(sparsity)
    density = 1 - sparsity
    assert phases[0].prune_sparsity == pytest.approx(sparsity + 0.2 * density)
    assert all(p.prune_sparsity < 1 - 0.5 * density for p in phases)
    if sparsity == 0.9:  # the paper's ResNet-32 recipe at 90%
        assert [p.prune_sparsity for p in phases] == pytest.approx([0.92, 0.91])
