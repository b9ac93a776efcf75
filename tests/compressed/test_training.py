"""Sparse training in compressed storage: the same run as masked storage, without dense tensors."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from slimkit.compressed import CompressedLinear, compressed_layers
from slimkit.methods import MEST, SET, DSR, RigL, GradualMagnitude, PhasedMEST, elastic_mutation_phases, soft_memory_bound_phases
from slimkit.sparse.masking import get_masks


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5)).double()


def _batches(steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(5, 40, generator=g, dtype=torch.float64)
    for _ in range(steps):
        y = torch.randint(5, (32,), generator=g)
        yield templates[y] + 0.5 * torch.randn(32, 40, generator=g, dtype=torch.float64), y


def _train(storage, make_method, steps=60):
    model = _mlp()
    method = make_method(model)
    if storage == "compressed":
        method.bind(None, total_steps=steps)
        method.use_compressed_storage()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    method.bind(optimizer, total_steps=steps)
    losses = []
    for x, y in _batches(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.step()
        losses.append(loss.item())
    return model, method, losses


def _kept_masks(model):
    masks = dict(get_masks(model))
    masks.update({name: layer.dense_mask() for name, layer in compressed_layers(model).items()})
    return masks


METHODS = {
    "mest": lambda m: MEST(m, sparsity=0.9, update_every=5, grad_weight=0.5, seed=3),
    "mest-em": lambda m: PhasedMEST(m, sparsity=0.9, phases=elastic_mutation_phases(0.9), update_every=5, seed=3),
    "mest-ems": lambda m: PhasedMEST(m, sparsity=0.9, phases=soft_memory_bound_phases(0.9), update_every=5, seed=3),
    "set": lambda m: SET(m, sparsity=0.8, update_every=5, seed=3),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_compressed_run_repeats_the_masked_run(name):
    masked_model, masked_method, masked_losses = _train("masked", METHODS[name])
    model, method, losses = _train("compressed", METHODS[name])
    assert set(compressed_layers(model)) == {"0", "2", "4"}
    assert losses == pytest.approx(masked_losses, rel=1e-9)
    assert masked_method.updates == method.updates > 3
    masked, kept = _kept_masks(masked_model), _kept_masks(model)
    for layer in masked:
        assert torch.equal(masked[layer], kept[layer]), layer
    x = next(_batches(1, seed=9))[0]
    assert torch.allclose(model(x), masked_model(x), rtol=1e-9, atol=1e-12)


def test_sparsity_is_exact_after_training_in_compressed_storage():
    model, method, _ = _train("compressed", METHODS["mest-ems"])
    target = method.densities(0.9)
    for name, layer in compressed_layers(model).items():
        assert layer.nnz == max(round(target[name] * layer.weight_numel), 1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m: RigL(m, sparsity=0.9), "dense information"),
        (lambda m: DSR(m, sparsity=0.9), "masked storage"),
        (lambda m: GradualMagnitude(m, sparsity=0.9), "masked storage"),
        (lambda m: MEST(m, sparsity=0.5, scheme="nm", scheme_options={"n": 2, "m": 4}), "nm scheme"),
    ],
)
def test_methods_that_need_dense_masks_refuse_compressed_storage(make, message):
    model = _mlp()
    method = make(model)
    method.bind(None, total_steps=10)
    with pytest.raises(ValueError, match=message):
        method.use_compressed_storage()
    assert not compressed_layers(model)


class LargestNewTensor(TorchDispatchMode):
    """Records the largest tensor any operator returns (every allocation an op makes)."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.where = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor) and tensor.layout == torch.strided and tensor.numel() > self.largest:
                self.largest, self.where = tensor.numel(), str(func)
        return out


def test_memory_economic_training_never_builds_a_dense_weight_sized_tensor():
    """MEST+EM and SET in compressed storage: forward, backward, optimizer step and mutation
    (update steps included) create no tensor as large as a pruned layer's dense weight."""
    for make in (METHODS["mest-em"], lambda m: SET(m, sparsity=0.9, update_every=1, seed=0)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 10))
        method = make(model)
        method.bind(None, total_steps=4)
        method.use_compressed_storage(["0"])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        method.bind(optimizer, total_steps=4)
        assert isinstance(model[0], CompressedLinear)
        method.update_every = 1  # mutate on every step
        x, y = torch.randn(16, 512), torch.randint(10, (16,))
        with LargestNewTensor() as tracker:
            for _ in range(3):
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                method.step()
        assert method.updates >= 2
        dense_numel = 512 * 1024
        assert tracker.largest < 0.5 * dense_numel, (tracker.largest, tracker.where)
