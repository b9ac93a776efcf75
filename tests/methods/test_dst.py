import copy
import logging

import pytest
import torch
from torch import nn

from tests.methods.resume import assert_resume_is_exact

from slimkit.data import make_loaders
from slimkit.methods import (
    MEST, SET, Phase, PhasedMEST, PruneOnce, RigL, elastic_mutation_phases, soft_memory_bound_phases,
)
from slimkit.sparse import get_masks, original_weight, remove_masks
from slimkit.train import Callback, Trainer, TrainConfig

from .test_prune_methods import SCHEMES, SPLITS, SmallConvNet


def _make(kind, model, scheme="unstructured", sparsity=0.9, **kw):
    common = dict(sparsity=sparsity, scheme=scheme, scheme_options=SCHEMES[scheme], update_every=1, seed=3, **kw)
    if kind == "mest":
        return MEST(model, **common)
    if kind == "mest-em":
        return PhasedMEST(model, phases=elastic_mutation_phases(sparsity), **common)
    if kind == "mest-ems":
        return PhasedMEST(model, phases=soft_memory_bound_phases(sparsity), **common)
    if kind == "rigl":
        return RigL(model, **common)
    return SET(model, **common)


class Inspector(Callback):
    """Runs after the method on every step: records masks and checks the method's invariants."""

    def __init__(self, method):
        self.method = method
        self.masks = []

    def on_step_end(self, trainer, step):
        masks = {n: m.clone() for n, m in get_masks(trainer.model).items()}
        method = self.method
        targets = method.targets(method.progress) if not method.finished else None
        expected = method.densities(targets[0] if targets else method.sparsity)
        for name, module in method.layers.items():
            if name not in method.dense_layers:  # a dense layer is outside the scheme
                method.scheme.validate(masks[name])
            unit = method.scheme.unit_size(tuple(module.weight.shape))
            assert abs(int(masks[name].sum()) - expected[name] * masks[name].numel()) <= unit, name
            assert torch.all(module.weight[~masks[name]] == 0)
        self.masks.append(masks)


def _fit(method, model, epochs=3):
    inspector = Inspector(method)
    config = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, progress="none")
    trainer = Trainer(model, make_loaders(SPLITS, 128), config, callbacks=[method, inspector])
    trainer.fit()
    return trainer, inspector


@pytest.mark.parametrize("kind", ["mest", "mest-em", "mest-ems", "set", "rigl"])
@pytest.mark.parametrize("scheme", ["unstructured", "channel", "block", "pattern", "nm"])
def test_masks_mutate_keep_the_scheme_and_end_exactly_at_target(kind, scheme):
    torch.manual_seed(0)
    model = SmallConvNet()
    sparsity = {"nm": 0.5, "channel": 0.7}.get(scheme, 0.9)  # channel: 8-filter layers need room to move
    method = _make(kind, model, scheme, sparsity)
    trainer, inspector = _fit(method, model)
    assert method.updates > 3
    changed = sum(not torch.equal(a[n], b[n]) for a, b in zip(inspector.masks, inspector.masks[1:]) for n in a)
    assert changed > 0  # connectivity really moves
    assert method.finished
    final = inspector.masks[-1]
    final_density = method.densities(sparsity)
    for name, module in method.layers.items():
        unit = method.scheme.unit_size(tuple(module.weight.shape))
        assert abs(int(final[name].sum()) - final_density[name] * final[name].numel()) <= unit


def test_soft_memory_bound_trains_denser_then_settles():
    torch.manual_seed(0)
    model = SmallConvNet()
    method = _make("mest-ems", model)
    _, inspector = _fit(method, model)
    total = lambda masks: sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    early, late = total(inspector.masks[1]), total(inspector.masks[-1])
    assert early == pytest.approx(0.15, abs=0.02)  # s - 5%
    assert late == pytest.approx(0.10, abs=0.01)


def test_grown_weights_start_at_zero_with_fresh_optimizer_state():
    torch.manual_seed(0)
    model = SmallConvNet()
    method = _make("mest", model, mutation_rate=0.5)
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
        _, inspector = _fit(_make("mest-em", model), model, epochs=2)
        runs.append(inspector.masks)
    assert all(torch.equal(a[n], b[n]) for a, b in zip(*runs) for n in a)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda m: MEST(m, sparsity=0.9, mutation_rate=0.0), "mutation rate"),
        (lambda m: MEST(m, sparsity=0.9, mutation_rate=1.0), "mutation rate"),
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


def test_dsr_keeps_the_global_count_and_moves_density_between_layers():
    from slimkit.methods import DSR

    torch.manual_seed(0)
    model = SmallConvNet()
    method = DSR(model, sparsity=0.9, update_every=1, threshold=1e-4, mutation_rate=0.2)
    _, inspector = _fit_recording(method, model)
    counts = [sum(int(m.sum()) for m in masks.values()) for masks in inspector]
    assert len(set(counts)) == 1  # exact global budget at every step
    first, last = inspector[0], inspector[-1]
    assert any(int(first[n].sum()) != int(last[n].sum()) for n in first)  # reallocated across layers
    assert method.threshold > 1e-4  # too few weights were below the initial threshold: it grew


def _fit_recording(method, model):
    recorder = []

    class Record(Callback):
        def on_step_end(self, trainer, step):
            recorder.append({n: m.clone() for n, m in get_masks(trainer.model).items()})

    config = TrainConfig(epochs=3, batch_size=128, lr=0.05, progress="none")
    Trainer(model, make_loaders(SPLITS, 128), config, callbacks=[method, Record()]).fit()
    return method, recorder


def test_dsr_split_is_proportional_exact_and_capped():
    from slimkit.methods.dst.dsr import _split_by_share

    split = _split_by_share(10, {"a": 3.0, "b": 1.0}, {"a": 100, "b": 100})
    assert split == {"a": 8, "b": 2} or split == {"a": 7, "b": 3}
    assert sum(split.values()) == 10
    capped = _split_by_share(10, {"a": 9.0, "b": 1.0}, {"a": 4, "b": 100})
    assert capped == {"a": 4, "b": 6}


def test_dsr_refuses_structured_schemes():
    from slimkit.methods import DSR

    with pytest.raises(ValueError, match="unstructured"):
        DSR(SmallConvNet(), sparsity=0.9, scheme="channel")


@pytest.mark.parametrize("sparsity", [0.9, 0.98, 0.995])
def test_elastic_mutation_never_prunes_every_active_weight(sparsity):
    phases = elastic_mutation_phases(sparsity)
    density = 1 - sparsity
    assert phases[0].prune_sparsity == pytest.approx(sparsity + 0.2 * density)
    assert all(p.prune_sparsity < 1 - 0.5 * density for p in phases)
    if sparsity == 0.9:  # the paper's ResNet-32 recipe at 90%
        assert [p.prune_sparsity for p in phases] == pytest.approx([0.92, 0.91])


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
    method = _make("mest-em", model, scheme, 0.9, dense_layers=["conv1"])
    trainer, inspector = _fit(method, model)
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
