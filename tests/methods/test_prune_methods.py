import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from slimkit.data import load_dataset, make_loaders
from slimkit.methods import GradualMagnitude, PruneOnce
from slimkit.methods.base import method_generator
from slimkit.sparse import get_masks, sparsity_report
from slimkit.train import Trainer, TrainConfig
from tests.methods.resume import assert_resume_is_exact


class SmallConvNet(nn.Module):
    """3x3 convs (for patterns), widths divisible by 4 (for 2:4), and a linear head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(16 * 16, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


SPLITS = load_dataset("synthetic")
SCHEMES = {
    "unstructured": {},
    "channel": {},
    "block": {"block": [4, 4], "prune": "rows"},
    "pattern": {},
    "nm": {"n": 2, "m": 4},
}


def _train(model, method, epochs=1):
    config = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, progress="none")
    trainer = Trainer(model, make_loaders(SPLITS, 128), config, callbacks=[method])
    trainer.fit()
    return trainer


def _check_exact(method, masks):
    """Each layer within one rounding unit of its allocated density; globally within their sum."""
    kept = target_total = units = 0
    for name, module in method.layers.items():
        unit = method.scheme.unit_size(tuple(module.weight.shape))
        target = method.last_densities[name] * module.weight.numel()
        assert abs(int(masks[name].sum()) - target) <= unit + 1e-9, name
        method.scheme.validate(masks[name])
        kept, target_total, units = kept + int(masks[name].sum()), target_total + target, units + unit
    numel = sum(m.weight.numel() for m in method.layers.values())
    assert target_total == pytest.approx((1 - method.sparsity) * numel, abs=units)
    assert abs(kept - (1 - method.sparsity) * numel) <= 2 * units


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(sorted(SCHEMES)),
    allocation=st.sampled_from(["uniform", "erk", "global"]),
    sparsity=st.floats(0.6, 0.97),
    criterion=st.sampled_from(["magnitude", "random", "snip"]),
)
def test_every_scheme_and_allocation_hits_the_target_and_never_drifts(scheme, allocation, sparsity, criterion):
    if scheme == "nm":
        sparsity = 0.5
    torch.manual_seed(0)
    model = SmallConvNet()
    method = PruneOnce(
        model, sparsity=sparsity, criterion=criterion, scheme=scheme, scheme_options=SCHEMES[scheme],
        allocation=allocation,
    )
    method.batches = make_loaders(SPLITS, 64).train
    method.bind(None, total_steps=10)
    first = {n: m.clone() for n, m in get_masks(model).items()}
    _check_exact(method, first)
    _train(model, method)
    after = get_masks(model)
    assert all(torch.equal(first[n], after[n]) for n in first)  # static masks: no drift
    for name, module in method.layers.items():
        assert torch.all(module.weight[~after[name]] == 0)


@pytest.mark.parametrize("sparsity", [0.8, 0.9])
def test_synflow_prunes_to_patterns(sparsity):
    """SynFlow's schedule starts at the densest pattern masks (4/9 of the taps), not at 1: every
    step used to ask for a density no pattern mask can hold, and every sparsity failed."""
    torch.manual_seed(0)
    model = SmallConvNet()
    method = PruneOnce(model, sparsity=sparsity, criterion="synflow", scheme="pattern", input_shape=(1, 8, 8),
                       synflow_iterations=10)
    method.bind(None, total_steps=1)
    _check_exact(method, get_masks(model))


def test_gradual_follows_the_cubic_schedule_and_ends_exactly():
    torch.manual_seed(0)
    model = SmallConvNet()
    method = GradualMagnitude(model, sparsity=0.9, gmp_start=0.0, gmp_end=0.5, prune_every=2)
    assert method.target(0.0) == 0.0 and method.target(0.5) == pytest.approx(0.9)
    assert method.target(0.25) == pytest.approx(0.9 * (1 - 0.5**3))
    trainer = _train(model, method, epochs=2)
    assert method.applied == pytest.approx(0.9)
    report = sparsity_report(model, method.layers)
    units = sum(method.scheme.unit_size(tuple(m.weight.shape)) for m in method.layers.values())
    assert abs(report.nonzero - 0.1 * report.numel) <= units
    assert trainer.global_step == 8


def test_gradual_needs_the_run_length():
    method = GradualMagnitude(SmallConvNet(), sparsity=0.5)
    with pytest.raises(ValueError, match="total_steps"):
        method.bind(None)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"sparsity": 1.0}, "sparsity must be in"),
        ({"sparsity": -0.2}, "sparsity must be in"),
        ({"sparsity": 0.9, "scheme": "nm", "scheme_options": {"n": 4, "m": 4}}, "N < M|N:M"),
        ({"sparsity": 0.9, "scheme": "nm"}, "fixes sparsity at 0.5"),
        ({"sparsity": 0.9, "scheme": "pattern", "layers": ["fc"]}, "fc"),
        ({"sparsity": 0.9, "layers": ["nope"]}, "unknown layer 'nope'"),
        ({"sparsity": 0.9, "scheme": "magic"}, "magic"),
        ({"sparsity": 0.9, "criterion": "obd", "obd_estimator": "gauss"}, "obd_estimator"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(kwargs, message):
    model = SmallConvNet()
    with pytest.raises(ValueError, match=message):
        PruneOnce(model, **kwargs)
    assert get_masks(model) == {}


def test_pattern_on_a_model_without_3x3_convs():
    from slimkit.models import build_model

    model = build_model("lenet300", SPLITS.info)
    with pytest.raises(ValueError, match="no layer that the pattern scheme can prune"):
        PruneOnce(model, sparsity=0.9, scheme="pattern")


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "random", "magnitude", "gmp"])
def test_cli_methods_train_sparse_models(method, tmp_path):
    from slimkit.cli import main
    from slimkit.export import load_model

    out = tmp_path / method
    argv = ["train", "--model", "lenet5", "--data", "synthetic", "--epochs", "2", "--batch-size", "64",
            "--method", method, "--sparsity", "0.9", "--synflow-iterations", "10", "--prune-every", "4",
            "--progress", "none", "--out", str(out)]
    assert main(argv) == 0
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["target_sparsity"] == 0.9
    assert metrics["sparsity_pruned_layers"] == pytest.approx(0.9, abs=0.002)
    assert metrics["flops_sparse"] < 0.2 * metrics["flops_dense"]
    model, _ = load_model(out)
    assert sparsity_report(model).sparsity == pytest.approx(0.9, abs=0.002)


def test_sparse_run_resumes_exactly(tmp_path):
    values = dict(model="lenet5", data="synthetic", epochs=3, batch_size=64, method="gmp", sparsity=0.8,
                  prune_every=3, progress="none")
    assert_resume_is_exact(values, tmp_path)


def test_channel_pruning_never_removes_classes_by_default():
    model = SmallConvNet()
    method = PruneOnce(model, sparsity=0.5, scheme="channel")
    assert "fc" not in method.layers and set(method.layers) == {"conv1", "conv2"}
    named = PruneOnce(SmallConvNet(), sparsity=0.5, scheme="channel", layers=["fc"])
    assert set(named.layers) == {"fc"}  # only when asked for by name


def test_random_pruning_at_init_can_rescale_like_dynamic_sparse_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(400, 300))
    reference = float(model[0].weight.detach().std())
    PruneOnce(model, sparsity=0.95, criterion="random", rescale_init=True).bind(None, total_steps=10)
    kept = model[0].weight.detach()[model[0].weight.detach() != 0]
    assert float(kept.std()) == pytest.approx(reference * 20 ** 0.5, rel=0.1)  # sqrt(fan-in / kept fan-in)


def test_obd_estimator_choice_reaches_the_criterion():
    """Each run keeps the weights its estimator scores highest, and the two estimators disagree."""
    from slimkit.importance import ScoringInputs, obd

    masks = {}
    for estimator in ("hutchinson", "fisher"):
        torch.manual_seed(0)
        model = SmallConvNet()
        reference = SmallConvNet()
        reference.load_state_dict(model.state_dict())
        batches = list(make_loaders(SPLITS, 64).train)[:1]
        method = PruneOnce(model, sparsity=0.8, criterion="obd", obd_estimator=estimator, batches=batches,
                           progress="none", seed=3)
        layers = {name: reference.get_submodule(name) for name in method.layers}
        inputs = ScoringInputs(batches, progress="none", generator=method_generator(3, "criterion"))
        scores = obd(reference, layers, inputs, estimator=estimator)
        method.bind(None, total_steps=10)
        masks[estimator] = get_masks(model)
        for name, mask in masks[estimator].items():
            kept, dropped = scores[name][mask.bool()], scores[name][~mask.bool()]
            assert float(kept.min()) >= float(dropped.max()) - 1e-12, (estimator, name)
    assert any(not torch.equal(masks["hutchinson"][n], masks["fisher"][n]) for n in masks["fisher"])
