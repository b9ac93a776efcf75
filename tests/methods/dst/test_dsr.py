"""DSR: an exact global budget reallocated across layers, unstructured only."""

import pytest
import torch

from slimkit.methods import DSR
from slimkit.methods.dst.dsr import _split_by_share

from tests.methods.dst.helpers import fit_recording
from tests.methods.test_prune_methods import SmallConvNet


def test_dsr_keeps_the_global_count_and_moves_density_between_layers():
    torch.manual_seed(0)
    model = SmallConvNet()
    method = DSR(model, sparsity=0.9, update_every=1, threshold=1e-4, mutation_rate=0.2)
    _, inspector = fit_recording(method, model)
    counts = [sum(int(m.sum()) for m in masks.values()) for masks in inspector]
    assert len(set(counts)) == 1  # exact global budget at every step
    first, last = inspector[0], inspector[-1]
    assert any(int(first[n].sum()) != int(last[n].sum()) for n in first)  # reallocated across layers
    assert method.threshold > 1e-4  # too few weights were below the initial threshold: it grew


def test_dsr_split_is_proportional_exact_and_capped():
    split = _split_by_share(10, {"a": 3.0, "b": 1.0}, {"a": 100, "b": 100})
    assert split == {"a": 8, "b": 2} or split == {"a": 7, "b": 3}
    assert sum(split.values()) == 10
    capped = _split_by_share(10, {"a": 9.0, "b": 1.0}, {"a": 4, "b": 100})
    assert capped == {"a": 4, "b": 6}


def test_dsr_refuses_structured_schemes():
    with pytest.raises(ValueError, match="unstructured"):
        DSR(SmallConvNet(), sparsity=0.9, scheme="channel")
