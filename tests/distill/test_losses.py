import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.distill import Distillation, Ensemble, HintAdapter, as_teacher, distillation_loss, hint_loss, kd_loss


def test_kd_loss_equals_hand_computed_value():
    student = torch.tensor([[1.0, 2.0, 3.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0]])
    T = 2.0

    def softmax(values):
        exps = [math.exp(v / T) for v in values]
        return [e / sum(exps) for e in exps]

    p, q = softmax([3.0, 1.0, 0.0]), softmax([1.0, 2.0, 3.0])
    expected = T**2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert kd_loss(student, teacher, T).item() == pytest.approx(expected, rel=1e-5)


def test_batchmean_and_t_squared_scaling():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    for T in (1.0, 4.0):
        kl = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="sum") / 8  # per example
        assert kd_loss(s, t, T).item() == pytest.approx(T**2 * kl.item(), rel=1e-5)
    # doubling the batch with the same rows leaves a per-example loss unchanged
    assert kd_loss(torch.cat([s, s]), torch.cat([t, t]), 4.0).item() == pytest.approx(kd_loss(s, t, 4.0).item(), rel=1e-6)


def test_alpha_mixes_and_zero_alpha_is_plain_cross_entropy():
    torch.manual_seed(1)
    s, t, y = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    ce = F.cross_entropy(s, y)
    assert distillation_loss(s, t, y, alpha=0.0).item() == pytest.approx(ce.item())
    mixed = distillation_loss(s, t, y, temperature=3.0, alpha=0.25).item()
    assert mixed == pytest.approx(0.25 * kd_loss(s, t, 3.0).item() + 0.75 * ce.item(), rel=1e-6)


def test_gradients_reach_only_the_student():
    student, teacher = nn.Linear(4, 3), as_teacher(nn.Linear(4, 3))
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    distillation_loss(student(x), teacher(x), y).backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training


def test_ensemble_averages_logits():
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(2, 4)
    assert torch.allclose(as_teacher([a, b])(x), (a(x) + b(x)) / 2)
    with pytest.raises(ValueError, match="output shape"):
        Ensemble([nn.Linear(4, 3), nn.Linear(4, 5)])(x)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same classes"):
        kd_loss(torch.randn(2, 10), torch.randn(2, 5))
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 3), temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        Distillation(nn.Linear(2, 2), alpha=1.5)


def test_hint_adapter_is_learned_and_shapes_checked():
    adapter = HintAdapter(4, 8)
    s, t = torch.randn(2, 4, 5, 5, requires_grad=True), torch.randn(2, 8, 5, 5)
    hint_loss(s, t, adapter).backward()
    assert adapter.proj.weight.grad.abs().sum() > 0 and s.grad is not None
    with pytest.raises(ValueError, match="do not match"):
        hint_loss(torch.randn(2, 4, 3, 3), t, adapter)
