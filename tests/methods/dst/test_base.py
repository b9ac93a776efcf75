"""What every dynamic sparse training method shares: scheme-valid masks at every step, exact
target sparsity at the end, zero-initialised growth, seeded determinism, clear errors, resume."""

import logging

import pytest
import torch
from torch import nn

from slimkit.data import make_loaders
from slimkit.methods import MEST, SET, Phase, PhasedMEST, PruneOnce
from slimkit.sparse import get_masks, original_weight

from tests.methods.dst.helpers import fit, make_method
from tests.methods.resume import assert_resume_is_exact
from tests.methods.test_prune_methods import SPLITS, SmallConvNet


@pytest.mark.parametrize("kind", ["mest", "mest-em", "mest-ems", "set", "rigl"])
@pytest.mark.parametrize("scheme", ["unstructured", "channel", "block", "pattern", "nm"])
def test_masks_mutate_keep_the_scheme_and_end_exactly_at_target(kind, scheme):
    torch.manual_seed(0)
    model = SmallConvNet()
    sparsity = {"nm": 0.5, "channel": 0.7}.get(scheme, 0.9)  # channel: 8-filter layers need room to move
    method = make_method(kind, model, scheme, sparsity)
    trainer, inspector = fit(method, model)
    assert method.updates > 3
    changed = sum(not torch.equal(a[n], b[n]) for a, b in zip(inspector.masks, inspector.masks[1:]) for n in a)
    assert changed > 0  # connectivity really moves
    assert method.finished
    final = inspector.masks[-1]
    final_density = method.densities(sparsity)
    for name, module in method.layers.items():
        unit = method.scheme.unit_size(tuple(module.weight.shape))
        assert abs(int(final[name].sum()) - final_density[name] * final[name].numel()) <= unit


def test_grown_weights_start_at_zero_with_fresh_optimizer_state():
    torch.manual_seed(0)
    model = SmallConvNet()
    method = make_method("mest", model, mutation_rate=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method.bind(opt, total_steps=100)
    x, y = next(iter(make_loaders(SPLITS, 64).train))[:2]
    for _ in range(2):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        method.step()
    before = {n: m.clone() for n, m in get_masks(model).items()}
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    method.mutate(0.9, 0.95)
    for name, mask in get_masks(model).items():
        grown = mask & ~before[name]
        assert grown.any()
        weight = original_weight(method.layers[name])
        assert torch.all(weight[grown] == 0)
        assert torch.all(opt.state[weight]["momentum_buffer"][grown] == 0)


def test_same_seed_same_masks():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = SmallConvNet()
        _, inspector = fit(make_method("mest-em", model), model, epochs=2)
        runs.append(inspector.masks)
    assert all(torch.equal(a[n], b[n]) for a, b in zip(*runs) for n in a)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda m: MEST(m, sparsity=0.9, mutation_rate=0.0), "mutation_rate"),
        (lambda m: MEST(m, sparsity=0.9, mutation_rate=1.0), "mutation_rate"),
        (lambda m: MEST(m, sparsity=0.9, update_every=0), "update interval"),
        (lambda m: SET(m, sparsity=0.9, zeta=1.5), "zeta"),
        (lambda m: PhasedMEST(m, sparsity=0.9, phases=[Phase(0.7, 0.9, 0.92), Phase(0.5, 0.9, 0.91)]), "ends before it starts"),
        (lambda m: PhasedMEST(m, sparsity=0.9, phases=[]), "at least one phase"),
        (lambda m: MEST(m, sparsity=0.9, allocation="global"), "uniform or erk"),
    ],
)
def test_bad_settings_fail_before_training(build, message):
    model = SmallConvNet()
    with pytest.raises(ValueError, match=message):
        build(model)
    assert get_masks(model) == {}


def test_dynamic_run_resumes_exactly(tmp_path):
    values = dict(model="lenet300", data="synthetic", epochs=3, batch_size=64, method="mest-ems", sparsity=0.8,
                  update_every=2, progress="none")
    assert_resume_is_exact(values, tmp_path)


def test_sparse_init_is_rescaled_to_the_dense_fan_in_variance():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(400, 300), nn.Linear(300, 200))
    dense_std = [float(m.weight.detach().std() * (m.weight.shape[1] ** 0.5)) for m in model]
    method = MEST(model, sparsity=0.95, update_every=10)
    method.bind(None, total_steps=100)
    for layer, reference in zip(model, dense_std):
        kept = layer.weight[layer.weight != 0]
        kept_fan_in = (layer.weight != 0).sum(1).float().mean()
        assert float(kept.std() * kept_fan_in.sqrt()) == pytest.approx(reference, rel=0.1)
    plain = nn.Sequential(nn.Linear(400, 300))
    MEST(plain, sparsity=0.95, update_every=10, rescale_init=False).bind(None, total_steps=100)
    kept = plain[0].weight[plain[0].weight != 0]
    assert float(kept.std()) == pytest.approx(dense_std[0] / 400 ** 0.5, rel=0.1)


@pytest.mark.parametrize("make", [
    lambda m: MEST(m, sparsity=0.95, update_every=10, rescale_init=False, seed=0),
    lambda m: PruneOnce(m, sparsity=0.95, criterion="random", seed=0),
])
def test_random_masks_are_independent_of_the_initial_weights(make):
    """Seeding the method's generator like the model's init once made the first layer's random
    mask keep exactly its largest positive weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(400, 300), nn.Linear(300, 200))
    before = model[0].weight.detach().clone()
    make(model).bind(None, total_steps=100)
    kept = model[0].weight.detach() != 0
    assert float(before[kept].std()) == pytest.approx(float(before.std()), rel=0.1)
    assert abs(float(before[kept].mean())) < 0.1 * float(before.std())


@pytest.mark.parametrize("scheme", ["pattern", "block"])
def test_a_dense_layer_is_left_alone_by_mutation(scheme):
    """dense_layers under a scheme that cannot express density 1 (pattern) used to fail at the
    first mutation; a dense layer now stays exactly dense."""
    torch.manual_seed(0)
    model = SmallConvNet()
    method = make_method("mest-em", model, scheme, 0.9, dense_layers=["conv1"])
    trainer, inspector = fit(method, model)
    assert method.updates > 3
    assert all(bool(masks["conv1"].all()) for masks in inspector.masks)


@pytest.mark.parametrize("settings, warned", [
    (dict(sparsity=0.95), True),  # conv1: 4 of 72 weights for 8 outputs
    (dict(sparsity=0.8), False),  # 14 weights
    (dict(sparsity=0.95, dense_layers=["conv1"]), False),
    (dict(sparsity=0.95, scheme="channel"), False),  # removing outputs is the channel scheme's point
])
def test_a_layer_left_fewer_weights_than_outputs_is_warned_about(caplog, settings, warned):
    with caplog.at_level(logging.WARNING, logger="slimkit"):
        MEST(SmallConvNet(), **settings)
    messages = [r.getMessage() for r in caplog.records if "outputs" in r.getMessage()]
    if warned:
        assert len(messages) == 1 and messages[0].startswith("layer conv1 keeps 4 of its 72 weights, fewer than its 8")
        assert "--dense-layers conv1" in messages[0]
    else:
        assert messages == []
