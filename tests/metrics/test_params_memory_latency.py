import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from slimkit.metrics import (
    PeakRSS, count_params, measure_latency, state_bytes, time_callable, training_state_bytes, weight_sparsity,
)


class _Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight):
        return weight * self.mask


def test_count_params_and_sparsity_see_masked_weights():
    layer = nn.Linear(10, 4)
    mask = torch.ones(4, 10)
    mask[:, :5] = 0
    parametrize.register_parametrization(layer, "weight", _Mask(mask))
    total, nonzero = count_params(layer)
    assert total == 44 and nonzero == 24
    assert weight_sparsity(nn.Sequential(layer)) == 0.5


def test_tied_parameters_count_once():
    a = nn.Linear(3, 3, bias=False)
    model = nn.Sequential(a, a)
    assert count_params(model) == (9, 9)
    assert state_bytes(model) == 9 * 4


def test_training_state_counts_grads_and_momentum():
    model = nn.Linear(100, 10, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert training_state_bytes(model, opt) == 4000
    model(torch.randn(2, 100)).sum().backward()
    opt.step()
    assert training_state_bytes(model, opt) == 3 * 4000  # weight, grad, momentum buffer


def test_peak_rss_sees_a_temporary_allocation():
    with PeakRSS() as mem:
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
        del block
    with PeakRSS() as quiet:
        pass
    assert mem.peak_bytes - quiet.peak_bytes > 48 * 1024 * 1024


def test_latency_reports_median():
    report = measure_latency(nn.Linear(8, 8), (8,), batch_size=4, warmup=1, repeats=5)
    assert 0 < report.p10_s <= report.median_s <= report.p90_s
    with pytest.raises(ValueError, match="repeats"):
        time_callable(lambda: None, repeats=0)


def test_a_trained_models_state_does_not_depend_on_grads_being_allocated_now():
    """A run resumed after its last epoch takes no step, so it has no grads; its figure must equal
    the uninterrupted run's."""
    model = nn.Linear(100, 10, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 100)).sum().backward()
    opt.step()
    uninterrupted = training_state_bytes(model, opt, trained=True)
    model.weight.grad = None  # as after loading the checkpoint in a new process
    assert training_state_bytes(model, opt, trained=True) == uninterrupted == 3 * 4000
