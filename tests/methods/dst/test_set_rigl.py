"""RigL: the dense gradient it grows by is exact, leaves no trace, and needs the batch."""

import copy

import pytest
import torch
from torch import nn

from slimkit.data import make_loaders
from slimkit.methods import RigL
from slimkit.sparse import get_masks, remove_masks

from tests.methods.test_prune_methods import SPLITS, SmallConvNet


def test_rigl_dense_gradient_is_exact_and_leaves_no_trace():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10))
    method = RigL(model, sparsity=0.8, update_every=1)
    method.bind(None, total_steps=10)
    x, y = next(iter(make_loaders(SPLITS, 32).train))[:2]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    grads = method._dense_gradients(x, y)
    assert all(torch.equal(buffers[n], b) for n, b in model.named_buffers())  # BN stats and masks untouched
    dense = copy.deepcopy(model)
    remove_masks(dense)
    loss = torch.nn.functional.cross_entropy(dense(x), y)
    reference = torch.autograd.grad(loss, [dense[0].weight, dense[4].weight])
    assert torch.allclose(grads["0"], reference[0], atol=1e-6) and torch.allclose(grads["4"], reference[1], atol=1e-6)
    masks = get_masks(model)
    assert (grads["4"][~masks["4"]] != 0).any()  # pruned weights do get a gradient here


def test_rigl_grows_where_the_gradient_is_largest():
    torch.manual_seed(0)
    model = SmallConvNet()
    method = RigL(model, sparsity=0.9, update_every=1)
    method.bind(None, total_steps=10)
    x, y = next(iter(make_loaders(SPLITS, 64).train))[:2]
    before = {n: m.clone() for n, m in get_masks(model).items()}
    method.observe(x, y)
    grads = method._dense_gradients(x, y)
    method.mutate(0.9, 0.95)
    after = get_masks(model)
    grown = after["fc"] & ~before["fc"]
    candidates = ~before["fc"]
    threshold = grads["fc"].abs()[grown].min()
    not_grown = candidates & ~after["fc"]
    assert grads["fc"].abs()[not_grown].max() <= threshold + 1e-12


def test_rigl_in_a_user_loop_needs_the_batch():
    model = SmallConvNet()
    method = RigL(model, sparsity=0.9, update_every=1)
    method.bind(None, total_steps=10)
    with pytest.raises(ValueError, match="observe"):
        method.step()


def test_python_names_match_the_config_keys_and_old_names_still_work():
    """RigL takes zeta and every rate-scheduled method mutation_stop, as the recipe key and the
    CLI flag say; RigL's alpha= and stop= keep working with a DeprecationWarning."""
    model = SmallConvNet()
    new = RigL(model, sparsity=0.8, zeta=0.2, mutation_stop=0.5)
    with pytest.warns(DeprecationWarning, match=r"RigL\(alpha=\.\.\.\) is now RigL\(zeta=\.\.\.\)"):
        old = RigL(SmallConvNet(), sparsity=0.8, alpha=0.2, stop=0.5)
    assert (old.zeta, old.mutation_stop) == (new.zeta, new.mutation_stop) == (0.2, 0.5)
    with pytest.raises(TypeError, match="both alpha= and its new name zeta="):
        RigL(SmallConvNet(), sparsity=0.8, alpha=0.2, zeta=0.1)
